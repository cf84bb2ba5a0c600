"""The "validated parameters" toggle and the marks in words under the slider.

The data (the marks, each compared method's parameters) is ``dashboard.validation``; this
module lays it out and keeps the toggle in the state (``?val=1``)."""

from __future__ import annotations

import streamlit as st

from dashboard.param_marks import marks_caption
from dashboard.views.common import Context, bind, commit, plain

TOGGLE_HELP = ("show the overview at the p chosen on the bundle's validation splits (id_val "
               "vs ood_val, OpenOOD's rule over the method's search grid) instead of the "
               "slider's p")


def render_toggle(ctx: Context) -> None:
    """Under the slider: the marks in words and the "validated parameters" toggle."""
    m = ctx.marks()
    text = marks_caption(m)
    if text:
        st.caption(plain(text))
    if m is not None:
        _toggle(ctx, disabled=m.validated is None)


def view_toggle(ctx: Context) -> None:
    """The toggle in a view that compares methods; shown there only when the slider's
    (methods with p) is not."""
    if ctx.marks() is None:
        _toggle(ctx)


def toggle(ctx: Context) -> None:
    """The toggle alone, for a view that compares methods and shows no slider marks (the
    leaderboard: the marks cost a validation search before its first row)."""
    _toggle(ctx)


def _toggle(ctx: Context, disabled: bool = False) -> None:
    bind("val", bool(ctx.state.val))
    st.toggle("validated parameters", key="val", disabled=disabled, help=TOGGLE_HELP)
    commit("val")
    ctx.state.val = int(bool(ctx.state.val))
