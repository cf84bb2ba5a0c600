"""The part of the page that one parameter move reruns: the p slider, the other parameters'
controls (``views/params.py``), what p means, and the selected view (``?view=``), in one
``st.fragment``."""

from __future__ import annotations

import streamlit as st

from ash_core import get_method
from dashboard.state import p_range
from dashboard.views import (
    across,
    common,
    compare,
    curves,
    distributions,
    export,
    inspector,
    leaderboard,
    numbers,
    overview,
    params,
    tradeoff,
    where,
)

#: ``State.view`` -> the view's ``render(ctx)`` (the names are ``state.VIEWS``'s keys)
PAGES = {
    "overview": overview.render,
    "distributions": distributions.render,
    "curves": curves.render,
    "tradeoff": tradeoff.render,
    "leaderboard": leaderboard.render,
    "inspector": inspector.render,
    "compare": compare.render,
    "across": across.render,
    "export": export.render,
    "where": where.render,
}


def p_slider(ctx: common.Context) -> None:
    """The p slider over the method's declared range (disabled for methods without p)."""
    s = ctx.state
    spec = get_method(s.method)
    low, high = p_range(s.method)
    if not low <= st.session_state.get("p", s.p) <= high:
        st.session_state["p"] = min(max(s.p, low), high)
    common.bind("p")
    param = next((q for q in spec.params if q.name == "p"), None)
    others = [q.name for q in spec.params]
    none = f"{s.method} has no percentile" + (f"; its parameters: {', '.join(others)}"
                                             if others else "")
    st.slider("p: " + (param.help if param else f"({none})"), low, high, step=1,
              key="p", disabled=param is None,
              help=f"{s.method}'s percentile, {low}..{high}; default "
                   f"{param.default:g}" if param else f"{s.method} has no percentile parameter")
    common.commit("p")


@st.fragment
def render(ctx: common.Context) -> None:
    """The p slider and everything it drives (reruns alone when p moves)."""
    p_slider(ctx)
    params.render(ctx)
    if not ctx.ood:
        st.error("No OOD set selected: pick at least one in the sidebar.",
                 icon=":material/warning:")
    else:
        common.guarded(numbers.render, ctx)
        common.guarded(PAGES[ctx.state.view], ctx)
    common.write_url()  # after the view: it may have changed view-specific state
