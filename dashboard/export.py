"""Exports: a self-contained HTML report, tables as CSV/LaTeX/Markdown, figures as files.

No Streamlit here. Tables are rendered with ``ash_core.report.render_frame`` so an
exported table is the CLI's table.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from ash_core.report import render_frame

TABLE_FORMATS = {"csv": ("text/csv", "csv"), "latex": ("text/x-tex", "tex"),
                 "markdown": ("text/markdown", "md")}
TABLE_LABELS = {"csv": "CSV", "latex": "LaTeX", "markdown": "Markdown"}

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;color:#222;padding:0 1em}
h1{margin-bottom:0.2em} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:0.5em 0 1.5em 0;font-size:0.92em}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right} th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
pre{background:#f7f7f7;padding:0.8em;overflow:auto;font-size:0.85em}
.figure{margin:1em 0 2em 0}
"""


def table_text(df: pd.DataFrame, fmt: str, caption: str | None = None) -> str:
    """A table as csv, latex or markdown (text formats in %, CSV in fractions)."""
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; choose one of {', '.join(TABLE_FORMATS)}")
    return render_frame(df, fmt, caption=caption if fmt != "csv" else None)


def renderer_available() -> bool:
    """Whether static images (PNG/SVG) can be rendered (needs kaleido and a browser)."""
    try:
        import kaleido  # noqa: F401
    except Exception:
        return False
    return True


def figure_bytes(fig: go.Figure, fmt: str) -> tuple[bytes, str, str]:
    """(data, mime, extension) of a figure as png/svg, or as standalone HTML as fallback."""
    if fmt in ("png", "svg") and renderer_available():
        try:
            data = pio.to_image(fig, format=fmt)
            return data, "image/png" if fmt == "png" else "image/svg+xml", fmt
        except Exception:
            pass
    return figure_html(fig, full=True).encode(), "text/html", "html"


def figure_html(fig: go.Figure, full: bool = False, include_js: bool | str = True) -> str:
    return pio.to_html(fig, full_html=full, include_plotlyjs=include_js,
                       config={"displaylogo": False})


def _table_html(df: pd.DataFrame) -> str:
    """Fractions shown in % with 2 decimals (as the CLI's text tables)."""
    fmt = df.copy()
    for col in fmt.columns:
        if fmt[col].dtype.kind == "f" and col != "p":
            fmt[col] = [("-" if v != v else f"{100 * v:.2f}") for v in fmt[col]]
    return fmt.to_html(index=False, escape=True, border=0)


def build_report(
    title: str,
    settings: Mapping[str, Any],
    provenance: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, go.Figure],
    notes: str = "",
    link: str | None = None,
) -> str:
    """A single self-contained HTML file: settings, tables (values in %), interactive
    figures (plotly.js embedded once, no network needed) and the bundle's provenance."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='sub'>ASH Explorer report, generated {now}. Metric values in %.</p>",
    ]
    if notes:
        parts.append(f"<p>{html.escape(notes)}</p>")
    parts.append("<h2>Settings</h2>")
    parts.append(pd.DataFrame({"setting": list(settings), "value": [str(v) for v in
                                                                    settings.values()]})
                 .to_html(index=False, border=0))
    if link:
        parts.append(f"<p>View link: <code>{html.escape(link)}</code></p>")
    for name, df in tables.items():
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts.append(_table_html(df))
    first = True
    for name, fig in figures.items():
        parts.append(f"<h2>{html.escape(name)}</h2><div class='figure'>")
        parts.append(figure_html(fig, full=False, include_js=first))
        parts.append("</div>")
        first = False
    parts.append("<h2>Bundle provenance</h2>")
    parts.append(f"<pre>{html.escape(json.dumps(provenance, indent=2, default=str))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
