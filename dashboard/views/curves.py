"""ROC and precision-recall curves per OOD set, no shaping and shaped in one plot."""

from __future__ import annotations

import streamlit as st

from dashboard import figures, plotdata
from dashboard.views.common import Context


def render(ctx: Context) -> None:
    rep, base = ctx.replay(), ctx.baseline()
    result = rep.result
    conv = figures.convention_label(result.convention)
    st.subheader(f"ROC and PR curves: {ctx.setting}")
    st.caption(f"Positive class: {conv}. Curves are thinned server-side to a few hundred "
               "points; dashed grey: no shaping.")
    for kind in ("roc", "pr"):
        data = plotdata.curves(ctx.bundle, result, base, kind)
        mets = {n: (base.ood[n], result.ood[n]) for n in data}  # AUROC titles, FPR95 points
        st.plotly_chart(figures.curves_figure(data, kind, ctx.colors, ctx.setting,
                                              result.convention, metrics=mets,
                                              theme=ctx.theme), key=f"{kind}_chart")
