"""ROC and precision-recall curves per OOD set, no shaping and shaped in one plot."""

from __future__ import annotations

import streamlit as st

from dashboard import figures, services
from dashboard.views.common import Context


def render(ctx: Context) -> None:
    result, base = ctx.result(), ctx.baseline()
    conv = figures.convention_label(result.convention)
    st.subheader(f"ROC and PR curves: {ctx.setting}")
    st.caption(f"Positive class: {conv}. Curves are thinned server-side to a few hundred "
               "points; dashed grey: no shaping.")
    engine = ctx.state.engine
    roc = services.curve_data(result, base, ctx.bundle, ctx.ood, "roc", engine=engine)
    st.plotly_chart(figures.curves_figure(roc, "roc", ctx.colors, ctx.setting,
                                          result.convention), key="roc_chart")
    pr = services.curve_data(result, base, ctx.bundle, ctx.ood, "pr", engine=engine)
    st.plotly_chart(figures.curves_figure(pr, "pr", ctx.colors, ctx.setting,
                                          result.convention), key="pr_chart")
