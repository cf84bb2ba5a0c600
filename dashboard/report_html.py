"""The stand-alone HTML report: for a reader who never saw the app.

A plain-language summary first (what was compared, the headline result, the trade-off
in one sentence), then the settings, the tables (headers with units, from
``ash_core.reports.tables``) and interactive figures (plotly.js embedded once: no network), the
metric definitions and conventions, the app version and commit, and the bundle's
provenance. No Streamlit here; the numbers come in ready-made.
"""

from __future__ import annotations

import datetime as _dt
import html
import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from ash_core.reports.tables import render_labelled

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1000px;color:#222;padding:0 1em;line-height:1.45}
h1{margin-bottom:0.2em} .sub{color:#555;margin-top:0} .caption{color:#555;margin:0.3em 0}
.summary{background:#f4f7fb;border-left:4px solid #4C78A8;padding:0.6em 1em}
table{border-collapse:collapse;margin:0.5em 0 1.5em 0;font-size:0.9em}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right} th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
pre{background:#f7f7f7;padding:0.8em;overflow:auto;font-size:0.8em;white-space:pre-wrap;
overflow-wrap:anywhere}
dt{font-weight:600;margin-top:0.5em} dd{margin-left:1.2em}
.figure{margin:1em 0 2em 0;break-inside:avoid}
.modebar-container,.modebar{display:none!important}
@page{size:A4 landscape;margin:12mm}
@media print{body{margin:0;max-width:none;font-size:11px} h2,h3{break-after:avoid}
.figure{zoom:var(--fit,1)}
tr{break-inside:avoid} table{font-size:10px}}
"""
#: the most columns one printed table holds (an A4 landscape page at 10 px type); a wider
#: table is wrapped into several, each repeating its leading label columns
MAX_TABLE_COLUMNS = 12
#: the height (CSS px) a figure may take on a printed A4 landscape page, its heading included
PRINT_PAGE_PX = 600

_LOCAL_HOSTS = {"localhost", "localhost.localdomain", "0.0.0.0", ""}


@dataclass
class Section:
    """A titled part of the report: an introduction, tables and figures, in that order."""

    title: str
    intro: str = ""
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    figures: Mapping[str, go.Figure] = field(default_factory=dict)


def is_public_link(link: str | None) -> bool:
    """Whether ``link`` may appear in a report: an http(s) address whose host is not this
    machine or a private network (a relative ``?query`` is allowed: it names a state)."""
    if not link:
        return False
    parts = urlsplit(link)
    if not parts.scheme and not parts.netloc:
        return link.startswith("?")
    if parts.scheme not in ("http", "https"):
        return False
    host = (parts.hostname or "").lower()
    if host in _LOCAL_HOSTS or host.endswith(".local"):
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return True
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_unspecified)


def definitions_html(convention: str = "id") -> str:
    """What every number means, with both FPR95 conventions (the one used is marked)."""
    used = {"id": " (used in this report)", "ood": ""}
    if convention == "ood":
        used = {"id": "", "ood": " (used in this report)"}
    items = [
        ("Score", "Energy by default: logsumexp of the logits; higher means more "
                  "in-distribution (ID). OOD detection thresholds this score."),
        (f"FPR95, ID as positive{used['id']}", "The share of OOD samples accepted as ID at "
         "the threshold that keeps 95% of ID samples (the ASH paper's convention). Lower is "
         "better."),
        (f"FPR95, OOD as positive (OpenOOD){used['ood']}", "The share of ID samples flagged "
         "as OOD at the threshold that catches 95% of OOD samples. Lower is better."),
        ("AUROC", "Area under the ROC curve: the chance that a random ID sample scores "
                  "higher than a random OOD sample. Identical under both conventions; "
                  "higher is better, 50% is chance."),
        ("AUPR-In / AUPR-Out", "Average precision with ID (resp. OOD) as the positive "
                               "class. Higher is better."),
        ("ID accuracy", "Top-1 accuracy on the ID test set, with the shaping and without "
                        "it: shaping can cost accuracy."),
        ("p", "The pruning percentile: ASH keeps the k = D - round(D·p/100) largest "
              "activations of each sample and reshapes them (ASH-P keeps values, ASH-B "
              "binarises, ASH-S rescales by exp(s1/s2))."),
        ("Units", "Metrics are in % (2 decimals); differences (Δ) are in percentage "
                  "points (pp), always shaped minus no shaping, or B minus A."),
        ("Average", "The unweighted mean over the OOD sets listed."),
        ("Validated parameters", "Chosen on the bundle's validation splits only (id_val "
                                 "against the pooled ood_val splits), by OpenOOD's rule over "
                                 "each method's declared search grid; the test sets are never "
                                 "used. The settings and the leaderboard say which methods "
                                 "were validated and on which splits."),
        ("Pareto front", "The settings no other setting beats in both ID accuracy and the "
                         "OOD metric (higher AUROC, or lower FPR95); ties stay on it."),
    ]
    body = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items)
    return f"<dl>{body}</dl>"


def figure_html(fig: go.Figure, full: bool = False, include_js: bool | str = True) -> str:
    """The figure as HTML, without plotly's toolbar (it would be printed with the page)."""
    return pio.to_html(fig, full_html=full, include_plotlyjs=include_js,
                       config={"displaylogo": False, "responsive": True,
                               "displayModeBar": False})


def table_chunks(df: pd.DataFrame, max_columns: int = MAX_TABLE_COLUMNS
                 ) -> list[pd.DataFrame]:
    """``df`` split by columns into tables of at most ``max_columns`` that fit a printed
    page, each repeating the leading label (non-numeric) columns; every column appears in
    exactly one chunk besides the labels."""
    labels = []
    for col in df.columns:
        if pd.api.types.is_numeric_dtype(df[col]) or len(labels) >= max_columns // 2:
            break
        labels.append(col)
    rest = [c for c in df.columns if c not in labels]
    if len(df.columns) <= max_columns or not rest:
        return [df]
    step = max(1, max_columns - len(labels))
    return [df[labels + rest[i:i + step]] for i in range(0, len(rest), step)]


def redact_paths(value: Any) -> Any:
    """``value`` (JSON-like) with every absolute path replaced by its last component, so a
    report never shows where the server keeps its files."""
    if isinstance(value, Mapping):
        return {k: redact_paths(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_paths(v) for v in value]
    if isinstance(value, str) and (value.startswith(("/", "~", "\\\\"))
                                   or (len(value) > 2 and value[1] == ":" and value[2] in "/\\")):
        name = value.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        return f".../{name}" if name else "..."
    return value


def _settings_html(settings: Mapping[str, Any]) -> str:
    frame = pd.DataFrame({"setting": list(settings), "value": [str(v) for v in
                                                               settings.values()]})
    return frame.to_html(index=False, border=0, escape=True)


def _section_html(section: Section, js: list[bool]) -> list[str]:
    """``js`` holds one flag: whether plotly.js is still to be embedded (first figure)."""
    parts = [f"<h2>{html.escape(section.title)}</h2>"]
    if section.intro:
        parts.append(f"<p>{html.escape(section.intro)}</p>")
    for name, df in section.tables.items():
        parts.append(f"<h3>{html.escape(name)}</h3>")
        chunks = table_chunks(df)
        if len(chunks) > 1:
            parts.append(f"<p class='caption'>{len(df.columns)} columns, wrapped into "
                         f"{len(chunks)} tables that each repeat the first columns.</p>")
        parts += [render_labelled(chunk, "html") for chunk in chunks]
    for name, fig in section.figures.items():
        # the heading travels with its figure, and a figure taller than a printed page is
        # scaled to fit one: neither is left alone on a page
        fit = min(1.0, PRINT_PAGE_PX / float(fig.layout.height or 450))
        parts.append(f"<div class='figure' style='--fit:{fit:.3f}'>"
                     f"<h3>{html.escape(name)}</h3>")
        parts.append(figure_html(fig, full=False, include_js=js[0]))
        parts.append("</div>")
        js[0] = False
    return parts


def build_report(
    title: str,
    settings: Mapping[str, Any],
    provenance: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, go.Figure],
    notes: str = "",
    link: str | None = None,
    *,
    summary: Sequence[str] = (),
    sections: Sequence[Section] = (),
    convention: str = "id",
    version: str | None = None,
) -> str:
    """A single self-contained HTML file (see the module docstring).

    ``tables``/``figures`` form the first section ("Results"); ``sections`` follow.
    ``link`` is shown only when ``is_public_link`` (never a local address).
    """
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    made = f"ASH Explorer {version}" if version else "ASH Explorer"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='sub'>Report generated {now} by {html.escape(made)}. Metric values in "
        "%, differences in percentage points (pp).</p>",
    ]
    if summary or notes:
        parts.append("<h2>Summary</h2><div class='summary'>")
        parts += [f"<p>{html.escape(s)}</p>" for s in summary]
        if notes:
            parts.append(f"<p>{html.escape(notes)}</p>")
        parts.append("</div>")
    parts += ["<h2>What was compared</h2>", _settings_html(settings)]
    if is_public_link(link):
        shown = html.escape(link)
        parts.append(f"<p>Open this view in the dashboard: <code>{shown}</code></p>")
    js = [True]
    parts += _section_html(Section("Results", "", tables, figures), js)
    for section in sections:
        parts += _section_html(section, js)
    parts += ["<h2>How to read the numbers</h2>", definitions_html(convention)]
    parts.append("<h2>Bundle provenance</h2>")
    parts.append(f"<pre>{html.escape(json.dumps(redact_paths(provenance), indent=2, default=str))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
