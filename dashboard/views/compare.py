"""Compare two settings (method / p / threshold) or two bundles side by side, or overlay
up to four methods.

A is always shown; when B cannot be computed the page says why next to A's numbers.
Two bundles are compared on the OOD sets both have (by name), so both averages are over
the same sets. The "methods" mode (``cmode=methods&cmethods=a,b``) draws up to four
methods' score histograms and ROC curves on one figure each (``views.compare_methods``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from ash_core import EvalResult, get_method
from ash_core.errors import BundleError
from ash_core.reports.intervals import bracket
from ash_core.setting import Setting
from dashboard import cache, figures, offer, replay, uncertainty
from dashboard.state import COMPARE_MODES, p_range
from dashboard.views import compare_methods, figure_io
from dashboard.views.cards import CARD_PX, card_row
from dashboard.views.common import (
    METRICS,
    Context,
    bind,
    commit,
    metrics_table,
    pct,
    plain,
    start_at_default_p,
    store,
)


@dataclass
class Side:
    """One column of the comparison: its label and how to compute its result."""

    label: str
    compute: Callable[[], tuple[EvalResult, pd.DataFrame]]


def _setting_b(ctx: Context) -> Side:
    s = store()
    c1, c2, c3 = st.columns(3)
    bind("bmethod")
    c1.selectbox("B: method", offer.methods_for(ctx.bundle), key="bmethod",
                 on_change=start_at_default_p, args=("bmethod", "bp"))
    commit("bmethod")
    spec = get_method(s.bmethod)
    modes = offer.thresholds_for(ctx.bundle, s.bmethod)
    if st.session_state.get("bthreshold", s.bthreshold) not in modes:
        st.session_state["bthreshold"] = modes[0]
    low, high = p_range(s.bmethod)
    if not low <= st.session_state.get("bp", s.bp) <= high:
        st.session_state["bp"] = min(max(s.bp, low), high)
    bind("bp")
    c2.slider("B: p", low, high, step=1, key="bp", disabled=not spec.has_p)
    bind("bthreshold")
    c3.radio("B: threshold", modes, key="bthreshold", horizontal=True, disabled=len(modes) < 2)
    commit("bp", "bthreshold")
    st.caption(plain("B: " + offer.p_caption(ctx.bundle, s.bmethod, s.bp, s.bthreshold,
                                              cache.id_zero_counts(ctx.bundle))))
    label = f"{ctx.bundle.name}: {s.setting_label(s.bmethod, s.bp_value, s.bthreshold)}"
    return Side(label, lambda: _result(ctx.bundle, ctx.ood, s.b_setting()))


def _result(bundle, ood, setting: Setting) -> tuple[EvalResult, pd.DataFrame]:
    s = store()
    if setting.threshold_mode not in offer.thresholds_for(bundle, setting.method):
        raise BundleError(f"{bundle.name} cannot serve {setting.method} with "
                          f"{setting.threshold_mode} thresholds: it has no id_fit split (ID "
                          "training features).")
    res = replay.replay(bundle, ood, setting, s.engine).result
    return res, cache.metrics_frame(res, replay.baseline(bundle, ood, setting))


def _pick_bundle_b(ctx: Context) -> str:
    s = store()
    options = list(ctx.bundles)
    if s.bbundle and s.bbundle not in options:
        options.append(s.bbundle)  # from a shared link; the path policy decides below
    others = [b for b in options if b != s.bundle] or options
    if s.bbundle not in options:
        s.bbundle = others[0]
        st.session_state.pop("bbundle", None)
    bind("bbundle")
    st.selectbox("B: bundle", options, key="bbundle")
    commit("bbundle")
    return s.bbundle


def _bundles_ab(ctx: Context) -> tuple[list[str], Side]:
    """(A's OOD sets, side B) for two bundles: the common sets, said plainly."""
    s = store()
    try:
        bundle_b = cache.get_bundle(_pick_bundle_b(ctx), ctx.policy)
    except Exception as exc:  # noqa: BLE001 - B's failure must not hide A

        def fail(exc=exc):
            raise exc
        return ctx.ood, Side(s.bbundle, fail)
    if bundle_b.dim != ctx.bundle.dim:
        # a caveat, not a failure: the comparison below is valid on the metrics
        st.info(plain(f"The bundles have different feature dimensions ({ctx.bundle.name}: "
                      f"D={ctx.bundle.dim}, {bundle_b.name}: D={bundle_b.dim}): their units "
                      "cannot be compared one to one. The metrics below are computed "
                      "separately per bundle, each with its own head."),
                icon=":material/info:")
    avail = cache.nonempty_ood(bundle_b)[0]
    common = [n for n in ctx.ood if n in avail]
    only_a = [n for n in ctx.ood if n not in avail]
    only_b = [n for n in avail if n not in ctx.ood]
    if common:
        ood_a = ood_b = common
        st.info(plain(f"Both averages are over the {len(common)} OOD set(s) both bundles "
                      f"have: {', '.join(common)}. Left out: "
                      f"{', '.join(only_a) or 'none'} (A only), {', '.join(only_b) or 'none'}"
                      " (B only)."), icon=":material/info:")
    else:
        ood_a, ood_b = ctx.ood, avail
        st.warning(plain(f"The bundles have no OOD set in common ({ctx.bundle.name}: "
                         f"{', '.join(ctx.ood)}; {bundle_b.name}: {', '.join(avail)}): each "
                         "average is over its own sets, so the two are not comparable."),
                   icon=":material/warning:")
    return ood_a, Side(f"{bundle_b.name}: {ctx.setting}",
                       lambda: _result(bundle_b, ood_b, s.setting()))


def _column(col, name: str, side: Side) -> tuple[EvalResult, pd.DataFrame] | None:
    with col:
        st.markdown(f"**{name}: {plain(side.label)}**")
        try:
            res, frame = side.compute()
        except Exception as exc:  # noqa: BLE001 - say why this side is missing
            st.error(f"{name} cannot be shown: {plain(cache.error_text(exc))}",
                     icon=":material/warning:")
            return None
        avg = frame[frame["ood_set"] == "Average"].iloc[0]
        cards = card_row(f"cmp_cards_{name.lower()}")  # wraps instead of cutting at 800 px
        cards.metric("avg AUROC", pct(avg["auroc"]), border=True, width=CARD_PX)
        cards.metric("avg FPR95", pct(avg["fpr95"]), border=True, width=CARD_PX)
        cards.metric("ID accuracy", pct(res.id_accuracy["shaped"]), border=True,
                     width=CARD_PX)
        metrics_table(frame, f"cmp_{name.lower()}")
        return res, frame


def _paired(ctx: Context, a: EvalResult, b: EvalResult) -> None:
    """A - B on the same images, each metric with its paired bootstrap interval."""
    pair = uncertainty.paired(ctx.bundle, a, b)
    parts = [f"{label} {100 * pair.average[m]:+.2f} pp {bracket(*pair.average_ci[m])} "
             f"({pair.verdict(m)})" for m, label in METRICS]
    st.markdown("**A − B, averages over the OOD sets** (paired bootstrap: both settings "
                "scored on the same resampled images, 95% intervals in pp): "
                + "; ".join(parts) + ".")


def render(ctx: Context) -> None:
    s = store()
    st.subheader("Compare")
    bind("cmode")
    st.radio("Compare", list(COMPARE_MODES), format_func=COMPARE_MODES.get, key="cmode",
             horizontal=True)
    commit("cmode")
    if s.cmode == "methods":
        compare_methods.render(ctx)
        return
    if s.cmode == "setting":
        ood_a, side_b = ctx.ood, _setting_b(ctx)
    else:
        ood_a, side_b = _bundles_ab(ctx)
    side_a = Side(f"{ctx.bundle.name}: {ctx.setting}",
                  lambda: _result(ctx.bundle, ood_a, s.setting()))
    left, right = st.columns(2)
    ra = _column(left, "A", side_a)
    rb = _column(right, "B", side_b)
    if ra is not None and rb is not None:
        if s.cmode == "setting":
            _paired(ctx, ra[0], rb[0])
        fa, fb = ra[1], rb[1]
        figure_io.show(ctx, figures.compare_figure(fa, fb, side_a.label, side_b.label,
                                                   s.convention, theme=ctx.theme),
                       "compare_chart", "compare", f"A = {side_a.label}; B = {side_b.label}")
