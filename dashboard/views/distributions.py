"""Score distributions: ID vs each OOD set, before vs after shaping, TPR-95 threshold marked,
and the operating point (a threshold of the user's) on the shaped panel with its readout."""

from __future__ import annotations

import streamlit as st

from dashboard import figures, figures_operating, plotdata
from dashboard.views import figure_io, operating
from dashboard.views.common import Context


def render(ctx: Context) -> None:
    s = ctx.state
    st.subheader(f"Score distributions: {ctx.setting}")
    rep = ctx.replay()
    hb, ha, thr_b, thr_a = plotdata.histograms(ctx.bundle, rep.result, ctx.baseline())
    st.caption("Density-normalised histograms (binned server-side). Dashed line: the score "
               f"threshold that keeps 95% of ID samples (no shaping: {thr_b:.3g}; "
               f"shaped: {thr_a:.3g}). Solid red line: the operating point below.")
    threshold, label = operating.control(ctx, rep.result)
    fig = figures.distributions_figure(hb, ha, ctx.bundle.id_split.name, thr_b, thr_a,
                                       ctx.colors, ctx.setting, s.score, theme=ctx.theme)
    figures_operating.mark_threshold(fig, threshold, label, panel=1, theme=ctx.theme)
    figure_io.show(ctx, fig, "distributions_chart", "distributions")
    operating.readout(ctx, rep.result, threshold, label, "distributions")
