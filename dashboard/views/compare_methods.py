"""Compare, "methods" mode: up to four methods' scores overlaid on one figure each.

Each method at the parameters the Leaderboard would give it (``validation.choices``: its
declared defaults, the sidebar's method at the slider's p; with the "validated parameters"
toggle, the parameters chosen on the validation splits), labelled with those parameters
and where they came from, on the current bundle, OOD selection, threshold mode, score and
convention, from the same engine as every view (``dashboard.replay``). Methods the bundle cannot serve, from a link, are named and left
out. The overlay data (histograms, pooled ROC) is ``ash_core.reports.overlay``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ash_core import EvalResult
from ash_core.reports.overlay import overlay
from ash_core.reports.tables import column_label
from dashboard import cache, figures_methods, offer, replay, validation
from dashboard.state import MAX_OVERLAY
from dashboard.views import figure_io, validated
from dashboard.views.common import Context, bind, board_note, plain, store


def _chosen(ctx: Context) -> list[str]:
    """The methods to overlay: the URL's (or the sidebar's method and none), served ones
    only, with a warning naming the rest."""
    s = store()
    served = offer.methods_for(ctx.bundle)
    asked = list(s.cmethods) or list(dict.fromkeys([s.method, "none"]))
    left_out = [m for m in asked if m not in served]
    if left_out:
        st.warning(plain(f"Left out: {', '.join(left_out)}: fitted on ID training features "
                         f"(an id_fit split), and {ctx.bundle.name} has none."),
                   icon=":material/warning:")
    bind("cmethods", [m for m in asked if m in served][:MAX_OVERLAY])
    st.session_state["cmethods"] = [m for m in st.session_state["cmethods"] if m in served]
    st.multiselect(f"Methods (up to {MAX_OVERLAY})", served, key="cmethods",
                   max_selections=MAX_OVERLAY,
                   help="each at its declared defaults (the sidebar's method at the "
                        "slider's p) or, with 'validated parameters', at the parameters "
                        "chosen on the validation splits, as in the Leaderboard")
    s.cmethods = tuple(st.session_state["cmethods"])
    return list(s.cmethods)


def summary_frame(results: dict[str, EvalResult], pooled: dict[str, float],
                  sources: dict[str, str]) -> pd.DataFrame:
    """One row per overlaid method: averages, pooled AUROC, both ID accuracies and where
    its parameters came from."""
    return pd.DataFrame([{
        "setting": label, "average/auroc": r.average["auroc"],
        "average/fpr95": r.average["fpr95"], "pooled/auroc": pooled[label],
        "id_acc": r.id_accuracy["shaped"], "id_acc_unshaped": r.id_accuracy["unshaped"],
        "parameters": sources[label]}
        for label, r in results.items()])


def render(ctx: Context) -> None:
    validated.view_toggle(ctx)
    methods = _chosen(ctx)
    if not methods:
        st.info("Pick at least one method to overlay.", icon=":material/info:")
        return
    s = ctx.state
    board_note(ctx)
    picked, note = validation.choices(ctx.bundle, ctx.ood, methods,
                                      s.setting(score=s.board_score), bool(s.val))
    if note:
        st.info(plain(f"Nothing validated: {note}"), icon=":material/info:")
    results = {c.label: replay.replay(ctx.bundle, ctx.ood, c.setting, s.engine).result
               for c in picked}
    data = overlay(results)
    frame = summary_frame(results, {k: v.pooled_auroc for k, v in data.items()},
                          {c.label: c.source for c in picked})
    config = {c: st.column_config.NumberColumn(column_label(c), format="%.2f")
              for c in frame.columns if c not in ("setting", "parameters")}
    config["parameters"] = st.column_config.TextColumn(
        "parameters (default / validated on)", width="large")
    st.dataframe(cache.percent(frame), hide_index=True, key="cmp_methods_table",
                 width="stretch", column_config=config)
    st.caption("pooled AUROC: ID against every selected OOD set pooled (the ROC figure's "
               "curves); avg: the mean of the per-set values. Each setting names its "
               "parameters and where they came from (default, slider or validated).")
    scores = {label: r.score for label, r in results.items()}
    shown = "; ".join(results)
    figure_io.show(ctx, figures_methods.overlay_histograms(data, scores, theme=ctx.theme),
                   "cmp_methods_hist", "methods_histograms", shown)
    figure_io.show(ctx, figures_methods.overlay_roc(data, store().convention, theme=ctx.theme),
                   "cmp_methods_roc", "methods_roc", shown)
