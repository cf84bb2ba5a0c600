"""Leaderboard: every method the bundle can serve, side by side, and the paper's Figure 1.

The table is ``ash_core.reports.leaderboard`` (each row exact, at the method's defaults or, with
the "validated parameters" toggle, at the parameters chosen on the validation splits);
Figure 1 adds the ASH variants' curves over p from the trade-off's sweep (score cube).
The board is computed once per bundle, OOD selection, score, convention, threshold mode
and toggle (a progress bar names the method being fitted or scored, and the rows computed
so far are shown as they come), then shared by
every session from a small LRU keyed by those values only (never by tensors).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ash_core.reports.leaderboard import Leaderboard, curve_methods, figure1, leaderboard
from ash_core.reports.tables import column_label
from dashboard import cache, export, figures_methods, offer, plotdata
from dashboard.state import PARETO_METRICS
from dashboard.views import figure_io, validated
from dashboard.views.common import Context, bind, board_note, commit, plain

#: boards kept (each holds every method's scores for one selection)
BOARDS = 8


@st.cache_resource(show_spinner=False)
def _boards() -> cache.LRU:
    return cache.LRU(BOARDS)


def board_key(ctx: Context) -> tuple:
    s = ctx.state
    return (*cache.bundle_key(ctx.bundle), tuple(ctx.ood), s.board_score, s.convention,
            s.threshold, bool(s.val))


def cached_board(ctx: Context) -> Leaderboard | None:
    """The board of the current selection if it was computed already (else None)."""
    return _boards().get(board_key(ctx))


def get_board(ctx: Context) -> Leaderboard:
    """The board of the current selection: cached, or computed with a progress bar."""
    board = cached_board(ctx)
    if board is not None:
        return board
    s = ctx.state
    slot, rows = st.empty(), st.empty()

    def progress(done: int, total: int, method: str) -> None:
        what = f"fitting and scoring {method}" if method else "done"
        slot.progress(min(1.0, done / max(total, 1)),
                      text=f"Leaderboard: {what} ... {done}/{total} methods (first time "
                           "only; fitted states are cached beside the bundle)")

    def partial(board: Leaderboard) -> None:  # the rows so far, while the others compute
        if board.rows:
            rows.dataframe(cache.percent(board.frame(seconds=False)), hide_index=True,
                           width="stretch")

    try:
        board = leaderboard(cache.get_evaluator(ctx.bundle, ctx.ood), threshold_mode=s.threshold,
                            score=s.board_score, convention=s.convention, validated=bool(s.val),
                            progress=progress, partial=partial)
    finally:
        slot.empty()
        rows.empty()
    _boards().put(board_key(ctx), board)
    return board


def caption(ctx: Context, board: Leaderboard) -> str:
    """What the table holds, for the page and for exported tables."""
    s = ctx.state
    return (f"{ctx.bundle.name}: every method, threshold={s.threshold}, score={s.board_score} "
            f"(methods that are scores use their own), FPR convention={s.convention}; "
            f"values in %. {board.statement()}")


def _table(board: Leaderboard) -> None:
    frame = cache.percent(board.frame(), keep=("seconds",))
    config = {c: column_label(c) for c in frame.columns if frame[c].dtype.kind not in "f"}
    config["params"] = st.column_config.TextColumn("params", width="medium")
    config["parameters"] = st.column_config.TextColumn("parameters (default / validated on)",
                                                       width="large")
    for c in frame.columns:
        if frame[c].dtype.kind == "f":
            config[c] = st.column_config.NumberColumn(column_label(c), format="%.2f")
    config["seconds"] = st.column_config.NumberColumn("time (s)", format="%.2f",
                                                      help="fit + search + scoring, first time")
    st.dataframe(frame, hide_index=True, key="leaderboard_table", width="stretch",
                 column_config=config)


def _unavailable(board: Leaderboard) -> None:
    if board.unavailable:
        lines = [f"- {m}: {plain(why)}" for m, why in board.unavailable.items()]
        st.info("Not ranked here:\n" + "\n".join(lines), icon=":material/info:")


def table_downloads(ctx: Context, board: Leaderboard, key: str = "dl_board") -> None:
    """CSV/LaTeX/Markdown of the board (``export.table_text``: the other tables' path),
    captioned with what was validated on what."""
    frame, text = board.frame(seconds=False), caption(ctx, board)
    cols = st.columns(len(export.TABLE_FORMATS))
    for col, (fmt, (mime, ext)) in zip(cols, export.TABLE_FORMATS.items(), strict=True):
        col.download_button(f"Leaderboard as {export.TABLE_LABELS[fmt]}",
                            export.table_text(frame, fmt, text),
                            file_name=f"ash_leaderboard.{ext}", mime=mime,
                            key=f"{key}_{fmt}")


def figure1_data(ctx: Context, board: Leaderboard, metric: str, progress=None):
    """Figure 1's data: the board's points and the ASH variants swept over the trade-off
    view's grid (the same cached sweep)."""
    s = ctx.state
    methods = curve_methods(offer.sweepable_for(ctx.bundle))
    df = plotdata.sweep_frame(ctx.bundle, ctx.ood, plotdata.grid_for(s.step), s.threshold,
                              s.board_score, s.convention, methods, progress) if methods \
        else pd.DataFrame(columns=["method", "p", "id_acc", f"average/{metric}"])
    return figure1(board, df, metric)


def _figure1(ctx: Context, board: Leaderboard) -> None:
    s = ctx.state
    st.markdown("**Figure 1: ID accuracy against average OOD performance**")
    bind("pareto")
    st.radio("OOD metric", list(PARETO_METRICS), format_func=PARETO_METRICS.get,
             key="pareto", horizontal=True)
    commit("pareto")
    metric = s.pareto.split("/")[-1]
    slot = st.empty()
    data = figure1_data(ctx, board, metric, lambda d, t: slot.progress(
        min(1.0, d / max(t, 1)), text=f"sweeping the ASH variants over p ... {d}/{t}"))
    slot.empty()
    current = (s.method, s.p_value) if s.method in set(data.curves["method"]) else None
    figure_io.show(ctx, figures_methods.figure1(data, s.convention, current, theme=ctx.theme),
                   "figure1_chart", "figure1", f"every method (current: {ctx.setting})")
    members = ", ".join(data.front["label"]) or "none"
    st.caption(plain(f"Pareto front (no other point has both a higher ID accuracy and a "
                     f"better average {metric.upper()}): {members}. Curves: p = 0, {s.step}, "
                     f"{2 * s.step}, ... < 100 (grid step from the Trade-off view)."))


def render(ctx: Context) -> None:
    st.subheader(f"Leaderboard: every method on {plain(ctx.bundle.name)}")
    validated.toggle(ctx)
    board_note(ctx)
    board = get_board(ctx)
    st.caption(plain(caption(ctx, board)) + " Click a column header to sort.")
    _table(board)
    _unavailable(board)
    table_downloads(ctx, board)
    _figure1(ctx, board)
