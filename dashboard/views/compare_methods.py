"""Compare, "methods" mode: up to four methods' scores overlaid on one figure each.

Each method at its declared defaults (the sidebar's method at the slider's p), on the
current bundle, OOD selection, threshold mode, score and convention, from the same engine
as every view (``dashboard.replay``). Methods the bundle cannot serve, from a link, are
named and left out. The overlay data (histograms, pooled ROC) is ``ash_core.overlay``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ash_core import EvalResult, get_method
from ash_core.overlay import overlay
from ash_core.report import column_label
from dashboard import cache, figures_methods, offer
from dashboard import replay as engines
from dashboard.state import MAX_OVERLAY
from dashboard.views.common import Context, bind, plain, store


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
                   help="each at its declared defaults; the sidebar's method at the slider's p")
    s.cmethods = tuple(st.session_state["cmethods"])
    return list(s.cmethods)


def _results(ctx: Context, methods: list[str]) -> dict[str, EvalResult]:
    s = store()
    out = {}
    for m in methods:
        p = s.p_value if m == s.method else get_method(m).default_p
        label = s.setting_label(m, p, s.threshold)
        out[label] = engines.replay(ctx.bundle, ctx.ood, m, p, s.threshold, s.score,
                                    s.convention, s.engine).result
    return out


def summary_frame(results: dict[str, EvalResult], pooled: dict[str, float]) -> pd.DataFrame:
    """One row per overlaid method: averages, pooled AUROC and both ID accuracies."""
    return pd.DataFrame([{
        "setting": label, "average/auroc": r.average["auroc"],
        "average/fpr95": r.average["fpr95"], "pooled/auroc": pooled[label],
        "id_acc": r.id_accuracy["shaped"], "id_acc_unshaped": r.id_accuracy["unshaped"]}
        for label, r in results.items()])


def render(ctx: Context) -> None:
    methods = _chosen(ctx)
    if not methods:
        st.info("Pick at least one method to overlay.", icon=":material/info:")
        return
    results = _results(ctx, methods)
    data = overlay(results)
    frame = summary_frame(results, {k: v.pooled_auroc for k, v in data.items()})
    st.dataframe(cache.percent(frame), hide_index=True, key="cmp_methods_table",
                 width="stretch", column_config={
                     c: st.column_config.NumberColumn(column_label(c), format="%.2f")
                     for c in frame.columns if c != "setting"})
    st.caption("pooled AUROC: ID against every selected OOD set pooled (the ROC figure's "
               "curves); avg: the mean of the per-set values.")
    scores = {label: r.score for label, r in results.items()}
    st.plotly_chart(figures_methods.overlay_histograms(data, scores, theme=ctx.theme),
                    key="cmp_methods_hist")
    st.plotly_chart(figures_methods.overlay_roc(data, store().convention, theme=ctx.theme),
                    key="cmp_methods_roc")
