"""ASH Explorer dashboard (entry script).

    ash-explore dashboard [BUNDLE ...] [--bundle-root DIR ...] [--data-root DIR] [--port N]
    streamlit run dashboard/app.py -- [BUNDLE ...] [--bundle-root DIR ...] [--data-root DIR]

Thin by design: the sidebar sets the state (mirrored in the URL); the p slider and
the selected view live in a fragment, so moving p reruns only that part.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

if __package__ in (None, ""):  # `streamlit run dashboard/app.py` runs this as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ash_core import get_method  # noqa: E402
from dashboard import config  # noqa: E402
from dashboard.state import p_range  # noqa: E402
from dashboard.views import (  # noqa: E402
    common,
    compare,
    curves,
    distributions,
    export,
    inspector,
    leaderboard,
    numbers,
    overview,
    sidebar,
    tradeoff,
    where,
)

PAGES = {
    "overview": overview.render,
    "distributions": distributions.render,
    "curves": curves.render,
    "tradeoff": tradeoff.render,
    "leaderboard": leaderboard.render,
    "inspector": inspector.render,
    "compare": compare.render,
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
    st.slider("p: " + (param.help if param else "(no percentile)"), low, high, step=1,
              key="p", disabled=param is None,
              help=f"{s.method}'s percentile, {low}..{high}; default "
                   f"{param.default:g}" if param else f"{s.method} has no percentile parameter")
    common.commit("p")


@st.fragment
def live(ctx: common.Context) -> None:
    """The p slider and everything it drives (reruns alone when p moves)."""
    p_slider(ctx)
    if not ctx.ood:
        st.error("No OOD set selected: pick at least one in the sidebar.",
                 icon=":material/warning:")
    else:
        common.guarded(numbers.render, ctx)
        common.guarded(PAGES[ctx.state.view], ctx)
    common.write_url()  # after the view: it may have changed view-specific state


def main() -> None:
    st.set_page_config(page_title="ASH Explorer", page_icon="✂️", layout="wide")
    config.apply_torch_threads()
    ctx = sidebar.render(config.parse_app_args())
    common.write_url()
    if ctx.bundle is None:
        st.error(ctx.error or "No bundle.", icon=":material/warning:")
        st.info("Pick another bundle in the sidebar, or open one with `ash-explore dashboard "
                "PATH` (the demo bundle is cached_features/cifar10_resnet20).")
    else:
        live(ctx)


main()
