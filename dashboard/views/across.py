"""Across bundles: every shaping method on every bundle the dashboard was given (and those
under its bundle roots), near-OOD and far-OOD AUROC and ID accuracy in one picture, and
each shaping method's gain or loss against no shaping per bundle and group."""

from __future__ import annotations

import streamlit as st

from ash_core.reports.across import SHAPING, gains_table, heat_table
from dashboard import across_data, cache, figures_across
from dashboard.views import figure_io
from dashboard.views.common import Context, plain, progress_bar

PARAMS_NOTE = ("Each method at its declared defaults (ASH variants p=65, ReAct p=90, SCALE "
               "p=85, DICE p=90: the registry's defaults, shown in the table), threshold "
               "local, every non-empty OOD set of each bundle; near/far are the bundle's "
               "own groups, all the average over its OOD sets.")


def compute(ctx: Context) -> across_data.Across:
    s = ctx.state
    with progress_bar("Evaluating every shaping method on every bundle (once, then "
                      "cached)") as progress:
        return across_data.across(ctx.bundles, ctx.policy, s.board_score, s.convention,
                                  progress)


def tables(data: across_data.Across) -> dict:
    """The heatmaps' tables: near-OOD AUROC, far-OOD AUROC, ID accuracy."""
    return {"near-OOD AUROC": heat_table(data.frame, "near"),
            "far-OOD AUROC": heat_table(data.frame, "far"),
            "ID accuracy": heat_table(data.frame, None)}


def figures(data: across_data.Across, theme: str | None):
    return (figures_across.across_heatmaps(tables(data), theme=theme),
            figures_across.gains_heatmap(gains_table(data.frame), theme=theme))


def render(ctx: Context) -> None:
    st.subheader("Across bundles: where shaping helps, where it hurts")
    s = ctx.state
    data = across_data.cached(ctx.bundles, ctx.policy, s.board_score, s.convention)
    if data is None:  # a minute or more the first time: only when asked
        st.caption(plain(f"Evaluates no shaping and {len(SHAPING)} shaping methods "
                         f"({', '.join(SHAPING)}) on each of the {len(ctx.bundles)} bundle(s) "
                         "this dashboard serves: about 20 s per demo bundle the first time, "
                         "then kept for every session."))
        if not st.button("Compare every bundle", key="across_run", type="primary"):
            return
    data = data or compute(ctx)
    if data.frame.empty:
        st.info("No bundle could be evaluated: " + plain("; ".join(
            f"{k}: {v}" for k, v in data.left_out.items()) or "none given"))
        return
    st.caption(plain(f"{len(data.bundles)} bundle(s): {', '.join(data.bundles)}. "
                     + PARAMS_NOTE + f" Score: {ctx.state.board_score}."))
    heat, gains = figures(data, ctx.theme)
    what = f"{', '.join(data.bundles)}; every method at its defaults"
    figure_io.show(ctx, heat, "across_heat", "across_heatmaps", label=what)
    figure_io.show(ctx, gains, "across_gains", "across_gains",
                   label=f"{', '.join(SHAPING)} vs none on {', '.join(data.bundles)}")
    if data.left_out:
        st.caption(plain("Left out: " + "; ".join(f"{k}: {v}"
                                                  for k, v in data.left_out.items())))
    st.dataframe(cache.percent(data.frame), hide_index=True, width="stretch",
                 key="across_table")
