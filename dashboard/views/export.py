"""Present: the current view as a stand-alone HTML or PDF report; tables and figures as files.

Reports and figure files are built only when their button is clicked (deferred
download data), so moving p on this page costs no rendering.
"""

from __future__ import annotations

import os
from urllib.parse import urlencode

import streamlit as st

from dashboard import cache, export, validation
from dashboard.views import leaderboard
from dashboard.views.common import Context
from dashboard.views.report import build_html, report_parts  # noqa: F401 - the report API

#: a public address of the dashboard, for the link in reports (never a local one)
PUBLIC_URL_ENV = "ASH_PUBLIC_URL"


def render(ctx: Context) -> None:
    s = ctx.state
    st.subheader("Export the current view")
    query = urlencode(s.to_query(), safe=",/")
    try:
        here = (st.context.url or "").split("?")[0]
    except Exception:  # noqa: BLE001 - no browser context (tests, bare mode)
        here = ""
    st.markdown("**Link to this view** (opens exactly this state):")
    st.code(f"{here}?{query}", language=None)
    _report_buttons(ctx, query)
    _table_buttons(ctx)
    _figure_buttons(ctx)


def _report_buttons(ctx: Context, query: str) -> None:
    st.markdown("**Report** for someone who never saw the app: summary, tables, figures, "
                "trade-off, comparison, definitions")
    public = st.text_input("Public address of this dashboard (optional)",
                           os.environ.get(PUBLIC_URL_ENV, ""), key="export_public_url",
                           help="the report links to this view only at a public address; "
                                "a local one (localhost, private network) is left out")
    link = f"{public.rstrip('/')}/?{query}" if public else None
    if link and not export.is_public_link(link):
        st.caption("That address is local or private: the report will not link to it.")
    board = st.checkbox("Include the leaderboard (every method and Figure 1)", key="export_lb",
                        value=leaderboard.cached_board(ctx) is not None,
                        help="computed when the report is built if the Leaderboard view "
                             "has not computed it yet (about a minute with KNN on the demo "
                             "bundles)")
    across = st.checkbox("Include the comparison across bundles (every shaping method on "
                         "every bundle)", key="export_across", value=False,
                         help="evaluates every shaping method at its defaults on every "
                              "bundle this dashboard serves (about 1.5 min for the four demo "
                              "bundles the first time, then cached)")
    c1, c2 = st.columns(2)
    c1.download_button("Download HTML report", lambda: build_html(ctx, link, board, across),
                       file_name="ash_report.html", mime="text/html", key="dl_report",
                       type="primary", on_click="ignore")
    pdf_ok = export.browser_path() is not None
    c2.download_button("Download PDF report",
                       lambda: export.report_pdf(build_html(ctx, link, board, across)),
                       file_name="ash_report.pdf", mime="application/pdf", key="dl_report_pdf",
                       disabled=not pdf_ok, on_click="ignore",
                       help=None if pdf_ok else "needs Chromium (set BROWSER_PATH)")


def _table_buttons(ctx: Context) -> None:
    s = ctx.state
    frame = cache.metrics_frame(ctx.result(), ctx.baseline())
    caption = (f"{ctx.bundle.name}: {ctx.setting}, score={s.score}, FPR convention="
               f"{s.convention}; values in %, Δ in pp against no shaping. "
               + " ".join(f"{k}: {v}" for k, v in validation.export_rows(ctx.marks()).items()))
    st.markdown("**Tables** (CSV keeps fractions and column names; LaTeX and Markdown show "
                "%, with units in the headers)")
    cols = st.columns(len(export.TABLE_FORMATS))
    for col, (fmt, (mime, ext)) in zip(cols, export.TABLE_FORMATS.items(), strict=True):
        col.download_button(export.TABLE_LABELS[fmt], export.table_text(frame, fmt, caption),
                            file_name=f"ash_metrics.{ext}", mime=mime, key=f"dl_{fmt}")
    _leaderboard_tables(ctx)
    tab_fmt = st.radio("Preview", list(export.TABLE_FORMATS), key="export_preview",
                       horizontal=True, index=2, format_func=export.TABLE_LABELS.get)
    st.code(export.table_text(frame, tab_fmt, caption), language=None)


def _leaderboard_tables(ctx: Context) -> None:
    """The leaderboard's table files, once the Leaderboard view has computed it."""
    board = leaderboard.cached_board(ctx)
    if board is None:
        st.caption("The leaderboard's tables appear here once the Leaderboard view has "
                   "computed it for this selection.")
        return
    leaderboard.table_downloads(ctx, board, key="dl_lb")


def _figure_buttons(ctx: Context) -> None:
    st.markdown("**Figures** (light theme, 1100 px wide)")
    if export.renderer_available():
        fmt = st.radio("Figure format", list(export.FIGURE_FORMATS), key="fig_format",
                       horizontal=True, format_func=str.upper)
        mime, ext = export.FIGURE_FORMATS[fmt], fmt
    else:
        fmt, mime, ext = "html", "text/html", "html"
        st.info("No static image renderer here (needs kaleido 1.x and Chromium; set "
                "BROWSER_PATH to the browser), so figures download as interactive HTML.",
                icon=":material/info:")
    names = ["Overview", "Score distributions", "ROC curves", "PR curves"]
    cols = st.columns(len(names))
    for i, (col, name) in enumerate(zip(cols, names, strict=True)):
        def data(name=name) -> bytes:
            fig = report_parts(ctx)[2][name]
            if fmt == "html":
                return export.figure_html(fig, full=True).encode()
            return export.static_figure(fig, fmt)
        col.download_button(name, data, file_name=f"ash_{name.lower().replace(' ', '_')}.{ext}",
                            mime=mime, key=f"dl_fig_{i}", on_click="ignore")
