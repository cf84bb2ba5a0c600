"""Score distributions: ID vs each OOD set, before vs after shaping, TPR-95 threshold marked."""

from __future__ import annotations

import streamlit as st

from dashboard import figures, plotdata
from dashboard.views.common import Context


def render(ctx: Context) -> None:
    s = ctx.state
    st.subheader(f"Score distributions: {ctx.setting}")
    rep = ctx.replay()
    hb, ha, thr_b, thr_a = plotdata.histograms(ctx.bundle, rep.result, ctx.baseline())
    st.caption("Density-normalised histograms (binned server-side). Dashed line: the score "
               f"threshold that keeps 95% of ID samples (no shaping: {thr_b:.3g}; "
               f"shaped: {thr_a:.3g}).")
    fig = figures.distributions_figure(hb, ha, ctx.bundle.id_split.name, thr_b, thr_a,
                                       ctx.colors, ctx.setting, s.score, theme=ctx.theme)
    st.plotly_chart(fig, key="distributions_chart")
