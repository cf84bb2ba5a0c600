"""Every figure on every page, drawn with its export: PNG, SVG and its data as CSV.

One helper (``show``) replaces ``st.plotly_chart`` in the views, so a new figure gets its
downloads with no extra code. Files are stamped with the bundle, its content hash and the
setting (``stamp``) and drawn on the light template; they are built only when a button is
clicked, so drawing the page costs the buttons only.
"""

from __future__ import annotations

import re

import plotly.graph_objects as go
import streamlit as st

from dashboard import export
from dashboard.figure_style import stamped
from dashboard.views.common import Context


def stamp(ctx: Context, fig: go.Figure, setting: str | None = None) -> go.Figure:
    """``fig`` with a first title line naming the bundle (and its content hash) and the
    setting it shows."""
    return stamped(fig, f"{ctx.bundle.name} (content {ctx.bundle.content_hash[:12]}): "
                        f"{setting or ctx.setting}")


def file_stem(ctx: Context, name: str) -> str:
    """"ash_<bundle>_<figure>" in file-name-safe characters."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"ash_{ctx.bundle.name}_{name}").strip("_")


def show(ctx: Context, fig: go.Figure, key: str, name: str,
         setting: str | None = None, label: str | None = None) -> None:
    """Draw ``fig`` and, under it, its PNG, SVG and CSV downloads (``setting`` names what
    it shows when it is not the sidebar's setting; ``label`` replaces the whole stamp, for
    a figure of several bundles)."""
    st.plotly_chart(fig, key=key)
    static = export.renderer_available()
    stem = file_stem(ctx, name)

    def image(fmt: str) -> bytes:
        out = export.light(stamped(fig, label) if label else stamp(ctx, fig, setting))
        return export.static_figure(out, fmt) if static else \
            export.figure_html(out, full=True).encode()

    def table() -> bytes:
        return export.figure_frame(fig).to_csv(index=False).encode()

    cols = st.columns(3, gap="small")
    for col, fmt in zip(cols, ("png", "svg"), strict=False):
        ext, mime = (fmt, export.FIGURE_FORMATS[fmt]) if static else ("html", "text/html")
        col.download_button(f"{fmt.upper()}" if static else f"{fmt.upper()} (as HTML)",
                            lambda fmt=fmt: image(fmt), file_name=f"{stem}.{ext}", mime=mime,
                            key=f"{key}_dl_{fmt}", on_click="ignore", width="stretch",
                            help=f"this figure as {fmt.upper()}, titled with the bundle and "
                                 "setting" if static else "no static renderer here (kaleido "
                                 "and Chromium): an interactive HTML file instead")
    cols[2].download_button("Data (CSV)", table, file_name=f"{stem}.csv", mime="text/csv",
                            key=f"{key}_dl_csv", on_click="ignore", width="stretch",
                            help="every point of every trace: name, panel, x, y, z, text")
