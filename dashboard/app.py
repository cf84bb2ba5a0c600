"""ASH Explorer dashboard (entry script).

    ash-explore dashboard [BUNDLE ...] [--bundle-root DIR ...] [--data-root DIR] [--port N]
    streamlit run dashboard/app.py -- [BUNDLE ...] [--bundle-root DIR ...] [--data-root DIR]

Thin by design: the sidebar sets the state (mirrored in the URL); the p slider and the
selected view live in one fragment (``views/live.py``), so moving p reruns only that part.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

if __package__ in (None, ""):  # `streamlit run dashboard/app.py` runs this as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard import config  # noqa: E402
from dashboard.views import common, live, sidebar  # noqa: E402


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
        live.render(ctx)


main()
