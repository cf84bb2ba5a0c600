"""Trade-off over p (accuracy/OOD vs pruning) and the Pareto view across methods and p."""

from __future__ import annotations

import streamlit as st

from dashboard import figures, services
from dashboard.state import GRID_STEPS, PARETO_METRICS
from dashboard.views.common import Context, bind, commit


def render(ctx: Context) -> None:
    s = ctx.state
    st.subheader("Trade-off over the pruning percentile p")
    c1, c2 = st.columns(2)
    bind("step")
    c1.selectbox("p grid step", GRID_STEPS, key="step",
                 help="the sweep evaluates every method at p = 0, step, 2*step, ... < 100")
    commit("step")
    bind("pareto")
    c2.radio("Pareto OOD metric", list(PARETO_METRICS), format_func=PARETO_METRICS.get,
             key="pareto", horizontal=True)
    commit("pareto")
    grid = services.grid_for(s.step)
    bar = st.progress(0.0, text="sweeping methods over p ...")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"sweeping methods over p ... {done}/{total}")

    df = services.sweep_frame(ctx.bundle, ctx.ood, grid, s.threshold, s.score, s.convention,
                              progress=progress)
    bar.empty()
    st.caption(f"{len(df)} settings, threshold={s.threshold}, score={s.score}, FPR convention: "
               f"{figures.convention_label(s.convention)}. Values from ash_core.sweep.")
    current = s.p_value
    st.plotly_chart(figures.tradeoff_figure(df, current, s.convention), key="tradeoff_chart")
    y = s.pareto
    front = services.pareto(df, y)
    r = ctx.result()
    here = (ctx.setting, r.id_accuracy["shaped"], r.average[y.split("/")[-1]])
    st.plotly_chart(figures.pareto_figure(df, front, y, s.convention, current=here),
                    key="pareto_chart")
