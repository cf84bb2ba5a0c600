"""ROC or precision-recall curves per OOD set, no shaping and shaped in one plot.

One kind at a time (``?curve=roc|pr``, ROC by default): the browser then draws one
figure per slider move instead of two, which keeps the move under half a second."""

from __future__ import annotations

import streamlit as st

from dashboard import figures, plotdata
from dashboard.state import CURVE_KINDS
from dashboard.views.common import Context, bind, commit


def render(ctx: Context) -> None:
    rep, base = ctx.replay(), ctx.baseline()
    result = rep.result
    conv = figures.convention_label(result.convention)
    st.subheader(f"ROC and PR curves: {ctx.setting}")
    bind("curve")
    st.radio("curve", list(CURVE_KINDS), key="curve", horizontal=True,
             format_func=CURVE_KINDS.get, help="which curve every OOD set's panel shows")
    commit("curve")
    kind = ctx.state.curve
    st.caption(f"Positive class: {conv}. Curves are thinned server-side to a few hundred "
               "points; dashed grey: no shaping.")
    data = plotdata.curves(ctx.bundle, result, base, kind)
    mets = {n: (base.ood[n], result.ood[n]) for n in data}  # AUC titles, FPR95 points
    st.plotly_chart(figures.curves_figure(data, kind, ctx.colors, ctx.setting,
                                          result.convention, metrics=mets, theme=ctx.theme),
                    key=f"{kind}_chart")
