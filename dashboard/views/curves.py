"""ROC or precision-recall curves per OOD set, no shaping and shaped in one plot.

One kind at a time (``?curve=roc|pr``, ROC by default): the browser then draws one
figure per slider move instead of two, which keeps the move under half a second."""

from __future__ import annotations

import streamlit as st

from dashboard import figures, figures_operating, plotdata
from dashboard.state import CURVE_KINDS
from dashboard.views import figure_io, operating
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
               "points; dashed grey: no shaping; red diamonds: the operating point below.")
    threshold, label = operating.control(ctx, result)
    op = operating.readout_numbers(ctx, result, threshold)
    data = plotdata.curves(ctx.bundle, result, base, kind)
    mets = {n: (base.ood[n], result.ood[n]) for n in data}  # AUC titles, FPR95 points
    fig = figures.curves_figure(data, kind, ctx.colors, ctx.setting, result.convention,
                                metrics=mets, theme=ctx.theme)
    # ROC: (FPR, TPR); PR: (recall = TPR, precision), both in the positive class above
    x, y = ("fpr", "tpr") if kind == "roc" else ("tpr", "precision")
    points = {n: (op.rates(n)[x], op.rates(n)[y]) for n in data}
    figures_operating.mark_points(fig, list(data), points, label)
    figure_io.show(ctx, fig, f"{kind}_chart", f"{kind}_curves")
    operating.readout(ctx, result, threshold, label, "curves")
