"""Trade-off over p (accuracy/OOD vs pruning) and the Pareto view across methods and p."""

from __future__ import annotations

import streamlit as st

from dashboard import figures, offer, plotdata
from dashboard.param_marks import add_param_marks
from dashboard.state import GRID_STEPS, PARETO_METRICS
from dashboard.views import figure_io
from dashboard.views.common import Context, bind, board_note, commit, plain, progress_bar


def _controls() -> None:
    c1, c2 = st.columns(2)
    bind("step")
    c1.selectbox("p grid step", GRID_STEPS, key="step",
                 help="the sweep evaluates every method at p = 0, step, 2*step, ... < 100")
    commit("step")
    bind("pareto")
    c2.radio("Pareto OOD metric", list(PARETO_METRICS), format_func=PARETO_METRICS.get,
             key="pareto", horizontal=True)
    commit("pareto")


def render(ctx: Context) -> None:
    s = ctx.state
    st.subheader("Trade-off over the pruning percentile p")
    _controls()
    board_note(ctx)
    methods = offer.sweepable_for(ctx.bundle)  # only what this bundle can serve, with p
    with progress_bar("sweeping methods over p") as progress:
        df = plotdata.sweep_frame(ctx.bundle, ctx.ood, plotdata.grid_for(s.step), s.threshold,
                                  s.board_score, s.convention, methods, progress)
    st.caption(f"{len(df)} settings of {', '.join(methods)}; threshold={s.threshold}, "
               f"score={s.board_score}, FPR convention: {figures.convention_label(s.convention)}. "
               "Values from ash_core.sweep.")
    missing = offer.missing_caption(ctx.bundle)
    if missing:
        st.caption(plain(missing))
    current = s.p_value
    fig = add_param_marks(figures.tradeoff_figure(df, current, s.convention, theme=ctx.theme),
                          ctx.marks(), method=s.method)
    figure_io.show(ctx, fig, "tradeoff_chart", "tradeoff",
                   f"every method over p (current: {ctx.setting})")
    y = s.pareto
    front = plotdata.pareto(df, y)
    r = ctx.result()
    here = (ctx.setting, r.id_accuracy["shaped"], r.average[y.split("/")[-1]])
    figure_io.show(ctx, figures.pareto_figure(df, front, y, s.convention, current=here,
                                              theme=ctx.theme),
                   "pareto_chart", "pareto", f"every method over p (current: {ctx.setting})")
