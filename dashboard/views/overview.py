"""Overview: FPR95 / AUROC / AUPR-In / AUPR-Out per OOD set and average, deltas, ID accuracy."""

from __future__ import annotations

import streamlit as st

from ash_core import EvalResult
from ash_core.maths.bootstrap import BootstrapCI
from ash_core.reports.intervals import bracket, ci_frame
from ash_core.reports.tables import tie_warnings
from ash_core.search.grid import validation_statement
from dashboard import cache, figures, replay, uncertainty
from dashboard.views import common, figure_io, spread
from dashboard.views.cards import CARD_PX, card_row
from dashboard.views.common import METRICS, Context, metrics_table, pct, plain, pp

HELP = {"fpr95": "share of OOD samples accepted at the threshold keeping 95% of ID "
                 "(lower is better); average over the selected OOD sets",
        "auroc": "area under the ROC curve, ID vs OOD (higher is better); average",
        "aupr_in": "average precision with ID as the positive class; average",
        "aupr_out": "average precision with OOD as the positive class; average"}


#: what the intervals' slot says while they are bootstrapped in the background
COMPUTING = (f"95% bootstrap intervals: computing ({uncertainty.RESAMPLES} resamples in the "
             "background)")


def _counts(ci: BootstrapCI) -> str:
    return (f"ID {ci.n_id} images, OOD {sum(ci.n_ood.values())} images over "
            f"{len(ci.n_ood)} set(s)")


def _cards(avg, acc, ci: BootstrapCI | None, suffix: str = "") -> None:
    """The headline numbers as cards of one width that wrap (readable from 800 px up);
    their intervals in the help once ``ci`` is there."""
    row = card_row("overview_cards" + suffix)
    for m, label in METRICS:
        about = "" if ci is None else \
            f". 95% interval {bracket(*ci.average[m])} %; {_counts(ci)}"
        row.metric(f"avg {label}", pct(avg[m]), pp(avg[f"{m}_delta"]),
                   help=f"{HELP[m]}{about}",
                   delta_color="inverse" if m == "fpr95" else "normal", border=True,
                   width=CARD_PX)
    if acc["shaped"] is not None:
        row.metric("ID accuracy (shaped)", pct(acc["shaped"]),
                   pp(acc["shaped"] - acc["unshaped"]), border=True, width=CARD_PX,
                   help="top-1 accuracy on the ID test set with this shaping; delta "
                        "against no shaping")
        row.metric("ID accuracy (no shaping)", pct(acc["unshaped"]), border=True,
                   width=CARD_PX, help="top-1 accuracy on the ID test set, unshaped")
    else:
        row.metric("ID accuracy", "n/a (no labels)", border=True, width=CARD_PX)


def _ci_caption(ci: BootstrapCI) -> str:
    """The average's intervals and the counts, in words (the table has every row's)."""
    avg = ", ".join(f"{label} {bracket(*ci.average[m])}" for m, label in METRICS)
    return (f"95% bootstrap intervals of the averages (%): {avg}. {_counts(ci)}. "
            f"{ci.resamples} resamples (seed {ci.seed}), ID and each OOD set resampled "
            f"separately; `ash-explore evaluate --ci --ci-resamples {ci.resamples}` gives "
            "the same intervals.")


def _shown(ctx: Context) -> tuple[EvalResult, str, str | None]:
    """(result, setting label, note): at the validated p when the toggle is on and the
    bundle has validation splits, else at the slider's."""
    s = ctx.state
    m = ctx.marks() if s.val else None
    if m is None or m.validated is None:
        note = "no validated p for this bundle: showing the slider's p" if s.val else None
        return ctx.result(), ctx.setting, note
    p = m.validated["p"]
    result = replay.replay(ctx.bundle, ctx.ood, s.setting(p=p), s.engine, ctx.layer).result
    return result, s.setting_label(p=p), validation_statement(m.result)


def render(ctx: Context) -> None:
    (result, label, note), base = _shown(ctx), ctx.baseline()
    frame = cache.metrics_frame(result, base)
    avg = frame[frame["ood_set"] == "Average"].iloc[0]
    acc = result.id_accuracy
    st.subheader(f"Overview: {label} on {plain(ctx.bundle.name)}")
    if note:
        st.caption(plain(note))
    st.caption(f"score: {result.score} - FPR convention: "
               f"{figures.convention_label(result.convention)} - averages over "
               f"{len(result.ood)} OOD set(s); deltas against no shaping (pp = percentage points)")
    if ctx.bundle.groups:
        st.caption("OOD groups (each averaged in its own row): " + "; ".join(
            f"{plain(g)}: {', '.join(plain(n) for n in members)}"
            for g, members in ctx.bundle.groups.items()))
    for line in tie_warnings(result.to_dict().get("ties")):  # the AUROC range over tie orders
        st.warning(plain(line))
    # the numbers first; a new setting's intervals are bootstrapped in the background and
    # drawn in place when ready (a move meanwhile starts the next run at once)
    ci = uncertainty.ci_soon(ctx.bundle, result)
    cards, about, table = st.empty(), st.empty(), st.empty()
    _numbers(cards, about, table, frame, avg, acc, result, ci, "" if ci is not None
             else "_wait")
    if result.method == "ash-rand":
        spread.render(ctx, result.setting)
    figure_io.show(ctx, figures.overview_figure(frame, ctx.colors, label, result.convention,
                                                theme=ctx.theme), "overview_chart", "overview",
                   label)
    if ci is None:
        ci = common.await_value(lambda: uncertainty.ci_soon(ctx.bundle, result), about,
                                COMPUTING)
        if ci is not None:
            _numbers(cards, about, table, frame, avg, acc, result, ci, "")


def _numbers(cards, about, table, frame, avg, acc, result: EvalResult, ci, suffix: str
             ) -> None:
    """The cards, the intervals' caption and the table into their slots; without the
    intervals while ``ci`` is None (``suffix``: the keys of that first drawing)."""
    with cards.container():
        _cards(avg, acc, ci if isinstance(ci, BootstrapCI) else None, suffix)
    if ci is None:
        about.caption(f"{COMPUTING}; they appear here and in the table.")
    elif isinstance(ci, BaseException):
        about.caption(plain(f"95% bootstrap intervals unavailable: {cache.error_text(ci)}"))
    else:
        about.caption(_ci_caption(ci))
        frame = ci_frame(frame, ci, result.groups)
        for m, _ in METRICS:
            frame[f"{m}_ci"] = [bracket(lo, hi) for lo, hi in
                                zip(frame[f"{m}_lo"], frame[f"{m}_hi"], strict=True)]
    with table.container():
        metrics_table(frame, "overview_table" + suffix, deltas=True)
