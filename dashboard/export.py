"""Exports: tables as CSV/LaTeX/Markdown, figures as PNG/SVG/PDF, the report as HTML/PDF.

No Streamlit here. Tables are rendered by ``ash_core.reports.tables`` (so an exported table is
the CLI's table, with reader headers). Static figures are drawn by kaleido 1.x in a
headless Chromium: the browser named by ``BROWSER_PATH``, else the first of
``chromium``, ``chromium-browser``, ``google-chrome`` on PATH; kaleido never downloads
one here. Without kaleido or a browser figures fall back to standalone interactive HTML.
The report's PDF is printed by the same Chromium (``--print-to-pdf``).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from ash_core import __version__
from ash_core.errors import AshError
from ash_core.reports.tables import render_labelled
from dashboard.report_html import (  # noqa: F401 - the report API lives here too
    Section,
    build_report,
    figure_html,
    is_public_link,
)

TABLE_FORMATS = {"csv": ("text/csv", "csv"), "latex": ("text/x-tex", "tex"),
                 "markdown": ("text/markdown", "md")}
TABLE_LABELS = {"csv": "CSV", "latex": "LaTeX", "markdown": "Markdown"}
FIGURE_FORMATS = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
#: the environment variable naming the browser (kaleido's and choreographer's own)
BROWSER_ENV = "BROWSER_PATH"
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: the network is closed and nothing is downloaded or synced
CHROMIUM_FLAGS = ("--no-sandbox", "--headless", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run")
#: static figures are drawn this wide (px); PNGs at twice the resolution
FIGURE_WIDTH = 1100
PDF_TIMEOUT_S = 180
REPO = Path(__file__).resolve().parents[1]


def table_text(df, fmt: str, caption: str | None = None) -> str:
    """A table as csv (machine column names, fractions) or latex/markdown (reader headers
    with units, values in %, deltas in pp)."""
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; choose one of {', '.join(TABLE_FORMATS)}")
    return render_labelled(df, fmt, caption=caption if fmt != "csv" else None)


def browser_path() -> str | None:
    """The Chromium used for static figures and PDFs: ``$BROWSER_PATH`` when set (None if
    it is not an executable file), else the first known browser on PATH."""
    env = os.environ.get(BROWSER_ENV)
    if env:
        return env if os.path.isfile(env) and os.access(env, os.X_OK) else None
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def renderer_available() -> bool:
    """Whether static figures (PNG/SVG/PDF) can be drawn: kaleido and a browser exist."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    return browser_path() is not None


@functools.lru_cache(maxsize=1)
def app_version() -> str:
    """"0.1.0 (commit abc1234)", or the version alone outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return __version__
    commit = out.stdout.strip()
    return f"{__version__} (commit {commit})" if out.returncode == 0 and commit else __version__


def static_figure(fig: go.Figure, fmt: str, width: int = FIGURE_WIDTH) -> bytes:
    """``fig`` drawn as png, svg or pdf by kaleido in the system Chromium.

    Raises AshError when kaleido or the browser is missing or drawing fails.
    """
    if fmt not in FIGURE_FORMATS:
        raise AshError(f"unknown figure format {fmt!r}; choose one of "
                       f"{', '.join(FIGURE_FORMATS)}")
    browser = browser_path()
    try:
        import kaleido
    except ImportError as exc:
        raise AshError("static figures need kaleido 1.x: pip install 'kaleido>=1,<2'") from exc
    if browser is None:
        raise AshError(f"static figures need Chromium: install it (Debian: apt-get install "
                       f"chromium) or set {BROWSER_ENV} to a Chromium/Chrome executable")
    opts = dict(format=fmt, width=width, height=int(fig.layout.height or 500),
                scale=2 if fmt == "png" else 1)
    try:
        return kaleido.calc_fig_sync(fig.to_dict(), opts=opts,
                                     kopts={"mathjax": False, "path": browser})
    except Exception as exc:  # noqa: BLE001 - kaleido raises many kinds; say which
        raise AshError(f"drawing the figure as {fmt} with {browser} failed: {exc}") from exc


def figure_bytes(fig: go.Figure, fmt: str) -> tuple[bytes, str, str]:
    """(data, mime, extension) of a figure as png/svg/pdf, or standalone HTML when no
    static renderer is available (or it fails)."""
    if fmt in FIGURE_FORMATS and renderer_available():
        try:
            return static_figure(fig, fmt), FIGURE_FORMATS[fmt], fmt
        except AshError:
            pass
    return figure_html(fig, full=True).encode(), "text/html", "html"


def report_pdf(report: str, timeout: float = PDF_TIMEOUT_S) -> bytes:
    """The HTML report printed to PDF by headless Chromium (A4 landscape, no header).

    The report is written to a private temporary directory and printed from there;
    the directory is removed afterwards. Raises AshError when no browser is available
    or printing fails.
    """
    browser = browser_path()
    if browser is None:
        raise AshError(f"a PDF needs Chromium: install it (Debian: apt-get install chromium) "
                       f"or set {BROWSER_ENV}; the HTML report works without it")
    with tempfile.TemporaryDirectory(prefix="ash_report_") as tmp:
        src, out = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        try:
            src.write_text(report, encoding="utf-8")
        except OSError as exc:  # a full temporary directory: say so, offer the HTML
            raise AshError(f"cannot write the report to print it in {tmp} ({exc.strerror}); "
                           "free space there or download the HTML report") from None
        cmd = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={Path(tmp) / 'profile'}",
               "--no-pdf-header-footer", "--virtual-time-budget=20000",
               "--window-size=1100,1400", f"--print-to-pdf={out}", src.as_uri()]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                 check=False)
        except subprocess.TimeoutExpired as exc:
            raise AshError(f"printing the report with {browser} took over {timeout:.0f}s; "
                           "download the HTML report instead") from exc
        data = out.read_bytes() if out.is_file() else b""
        if not data.startswith(b"%PDF"):
            tail = (run.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise AshError(f"{browser} did not print the report (exit {run.returncode}: "
                           f"{tail[0]}); download the HTML report instead")
        return data


def figure_frame(fig: go.Figure) -> pd.DataFrame:
    """A figure's data as one long table, for its CSV: one row per point of every trace
    (trace name, panel axes, x, y, z for a heatmap cell, the hover text), so any figure's
    numbers download without a figure-specific writer."""
    def flat(values):
        """A two-level (multicategory) axis's labels as "outer / inner"."""
        if values is None:
            return None
        values = list(values)
        if values and isinstance(values[0], list | tuple):
            return [" / ".join(map(str, t)) for t in zip(*values, strict=False)]
        return values

    rows = []
    for i, tr in enumerate(fig.data):
        name = getattr(tr, "name", None) or f"trace {i}"
        axes_ = f"{getattr(tr, 'xaxis', None) or 'x'}/{getattr(tr, 'yaxis', None) or 'y'}"
        z = getattr(tr, "z", None)
        if z is not None:
            xs = flat(tr.x) if tr.x is not None else list(range(len(z[0]) if len(z) else 0))
            ys = flat(tr.y) if tr.y is not None else list(range(len(z)))
            for r, yv in enumerate(ys):
                for c, xv in enumerate(xs):
                    rows.append((i, name, axes_, xv, yv, z[r][c], None))
            continue
        xs = flat(getattr(tr, "x", None))
        ys = flat(getattr(tr, "y", None))
        if xs is None and ys is None:
            continue
        n = len(xs) if xs is not None else len(ys)
        text = getattr(tr, "text", None)
        texts = list(text) if isinstance(text, list | tuple) else [text] * n
        for j in range(n):
            rows.append((i, name, axes_, None if xs is None else xs[j],
                         None if ys is None else ys[j], None, texts[j] if j < len(texts)
                         else None))
    return pd.DataFrame(rows, columns=["trace", "name", "axes", "x", "y", "z", "text"])


def light(fig: go.Figure) -> go.Figure:
    """A copy of ``fig`` on the light template (figure files are for paper and slides)."""
    out = go.Figure(fig)
    out.update_layout(template="plotly_white")
    return out
