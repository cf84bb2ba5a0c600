"""ASH Explorer dashboard (entry script).

    ash-explore dashboard [BUNDLE ...] [--data-root DIR] [--port N]
    streamlit run dashboard/app.py -- [BUNDLE ...] [--data-root DIR]

Thin by design: the sidebar sets the state (mirrored in the URL); the p slider and
the selected view live in a fragment, so moving p reruns only that part.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

if __package__ in (None, ""):  # `streamlit run dashboard/app.py` runs this as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard import services  # noqa: E402
from dashboard.views import (  # noqa: E402
    common,
    compare,
    curves,
    distributions,
    export,
    inspector,
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
    "inspector": inspector.render,
    "compare": compare.render,
    "export": export.render,
    "where": where.render,
}

st.set_page_config(page_title="ASH Explorer", page_icon="✂️", layout="wide")
ctx = sidebar.render(services.parse_app_args())
common.write_url()


@st.fragment
def live(ctx: common.Context) -> None:
    """The p slider and everything it drives (reruns alone when p moves)."""
    from ash_core import get_method

    s = ctx.state
    has_p = get_method(s.method).has_p
    common.bind("p")
    st.slider("p (pruning percentile)", 0, 99, step=1, key="p", disabled=not has_p,
              help="percentage of units pruned per sample" if has_p
              else f"{s.method} has no percentile parameter")
    common.commit("p")
    if not ctx.ood:
        st.error("No OOD set selected: pick at least one in the sidebar.", icon=":material/warning:")
    else:
        common.guarded(PAGES[s.view], ctx)
    common.write_url()  # after the view: it may have changed view-specific state


if ctx.bundle is None:
    st.error(ctx.error or "No bundle.", icon=":material/warning:")
    st.info("Pick another bundle in the sidebar, or open one with `ash-explore dashboard "
            "PATH` (the demo bundle is cached_features/cifar10_resnet20).")
else:
    live(ctx)
