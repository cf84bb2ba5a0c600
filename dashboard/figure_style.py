"""Colours, themes and the panel grid shared by the pure figure builders in ``figures``.

A *theme* is "light", "dark" or None. None ("auto") is for figures whose page theme
is unknown (Streamlit restyles the chart to its own light or dark theme): every mark
colour is then a mid tone that reads on white and on Streamlit's dark background.
"light" and "dark" pin the template too (exports, reports, themed pages).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go

from ash_core import list_methods

ID_COLOR = "#4C78A8"
KEPT_COLOR = "#E45756"
OOD_PALETTE = ("#F58518", "#54A24B", "#B279A2", "#E45756", "#72B7B2", "#EECA3B",
               "#9D755D", "#FF9DA6", "#BAB0AC", "#2CA02C", "#8C564B", "#17BECF")
#: one colour per registered method, by its registry position (``method_colors``): mid
#: tones that read on light and dark pages; no shaping (the first) is grey
METHOD_PALETTE = ("#8C8C8C", "#4C78A8", "#F58518", "#E45756", "#72B7B2", "#54A24B",
                  "#B279A2", "#EECA3B", "#9D755D", "#FF9DA6", "#17BECF", "#BCBD22",
                  "#D62728", "#9467BD", "#2CA02C", "#E377C2", "#1F9E89", "#FF7F0E",
                  "#8C6D31", "#6B6ECF", "#AD494A", "#3182BD", "#E6550D", "#31A354")
METRIC_LABELS = {"fpr95": "FPR95", "auroc": "AUROC", "aupr_in": "AUPR-In",
                 "aupr_out": "AUPR-Out", "id_acc": "ID accuracy"}
#: page backgrounds the auto theme's marks must read on (Streamlit light and dark)
BACKGROUNDS = {"light": "#FFFFFF", "dark": "#0E1117"}
#: characters per title line before it wraps (a chart can be ~450 px wide at 800 px)
TITLE_CHARS = 64
#: chart width (px) the legend is laid out for: about the narrowest chart at 800 px
LEGEND_PX = 440


@dataclass(frozen=True)
class Theme:
    """Colours of the non-data marks (reference lines, 'no shaping', the chance line)."""

    name: str
    template: str | None
    ink: str        # threshold / current-p lines, the Pareto front, outlines
    base: str       # "no shaping" bars and curves
    faint: str      # the ROC chance diagonal
    highlight: str  # the current setting's star

    @property
    def backgrounds(self) -> tuple[str, ...]:
        if self.name == "auto":
            return tuple(BACKGROUNDS.values())
        return (BACKGROUNDS[self.name],)


THEMES = {
    "auto": Theme("auto", None, ink="#8E8E8E", base="#9A9A9A", faint="#7F7F7F",
                  highlight="#E8A400"),
    "light": Theme("light", "plotly_white", ink="#31333F", base="#8A8A8A", faint="#999999",
                   highlight="#C98A00"),
    "dark": Theme("dark", "plotly_dark", ink="#FAFAFA", base="#A6A6A6", faint="#6E6E6E",
                  highlight="#FFD23F"),
}
BASE_COLOR = THEMES["auto"].base


def theme_of(theme: str | None) -> Theme:
    """The Theme for "light", "dark" or None (auto); anything else is an error."""
    key = theme or "auto"
    if key not in THEMES:
        raise ValueError(f"unknown theme {theme!r}; use 'light', 'dark' or None")
    return THEMES[key]


def relative_luminance(color: str) -> float:
    """WCAG relative luminance of a "#RRGGBB" colour."""
    rgb = [int(color.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two "#RRGGBB" colours (1 to 21)."""
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def set_colors(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per OOD set (by position in the bundle's OOD list)."""
    return {n: OOD_PALETTE[i % len(OOD_PALETTE)] for i, n in enumerate(names)}


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    """The one colour of each method, the same in every view and figure: by the method's
    position in the registry (a name the registry does not know takes the colours after
    the registry's, in the order given)."""
    every = list_methods()
    known = {m: METHOD_PALETTE[i % len(METHOD_PALETTE)] for i, m in enumerate(every)}
    others = [m for m in dict.fromkeys(methods) if m not in known]
    extra = {m: METHOD_PALETTE[(len(every) + i) % len(METHOD_PALETTE)]
             for i, m in enumerate(others)}
    return {m: known.get(m) or extra[m] for m in methods}


def plain_text(text: str) -> str:
    """``text`` with ``&``, ``<`` and ``>`` as entities: plotly renders a small HTML subset
    (links among it) in titles, labels and ticks, and bundle-supplied strings (class names,
    bundle names) must show as plain text, never as markup."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def convention_label(convention: str) -> str:
    return "ID positive" if convention == "id" else "OOD positive"


def wrap_title(text: str, width: int = TITLE_CHARS) -> str:
    """``text`` broken into lines of at most ``width`` characters (plotly's <br>)."""
    return "<br>".join(textwrap.wrap(text, width)) or text


def legend_rows(labels: Sequence[str], width_px: int = LEGEND_PX) -> int:
    """Rows a horizontal legend of ``labels`` needs in a chart ``width_px`` wide (estimate:
    7 px per character plus the swatch), so the layout can reserve room for it."""
    if not labels:
        return 0
    rows, used = 1, 0
    for label in labels:
        w = 46 + 7 * len(label)
        if used and used + w > width_px:
            rows, used = rows + 1, 0
        used += w
    return rows


def base_layout(theme: Theme, title: str, height: int, legend: Sequence[str] = (),
                panel_title_lines: int = 0) -> dict:
    """Layout shared by every figure: a wrapped title, then the legend, then the panels.

    The legend sits between the title and the panels (never over axis labels or tick
    labels); the top margin is sized for the title's lines, the legend's rows and the
    panel titles' lines, and the figure grows by the same amount so the plot area keeps
    its height. (plotly anchors a multi-line title by its first line: hence the offset.)
    """
    text = wrap_title(title)
    lines = text.count("<br>") + 1
    rows = legend_rows(legend)
    legend_top = 10 + 20 * lines
    top = legend_top + 24 * rows + 18 * panel_title_lines + 10
    total = height + top - 60
    lay = dict(margin=dict(l=60, r=24, t=top, b=56), font=dict(size=13), height=total,
               title=dict(text=text, x=0, xanchor="left", xref="container", y=1 - 20 / total,
                          yanchor="top", yref="container", pad=dict(l=8),
                          font=dict(size=15)),
               showlegend=bool(legend),
               legend=dict(orientation="h", x=0, xanchor="left", xref="container",
                           y=1 - legend_top / total, yanchor="top", yref="container",
                           bgcolor="rgba(0,0,0,0)"))
    if theme.template:
        lay["template"] = theme.template
    return lay


def grid(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return max(1, math.ceil(n / ncols)), ncols


def ref(i: int) -> tuple[str, str]:
    """Axis references ("x3", "y3") of the i-th panel (0-based)."""
    return (f"x{i + 1}", f"y{i + 1}") if i else ("x", "y")


def panel(c: int) -> dict:
    """Trace keyword arguments placing it in panel ``c`` (1-based, row-major)."""
    xr, yr = ref(c - 1)
    return dict(xaxis=xr, yaxis=yr)


def subplots(rows: int, cols: int, titles: Sequence[str] = (), *, theme: Theme, title: str,
             height: int, legend: Sequence[str] = (), hspace: float = 0.1,
             vspace: float = 0.1) -> go.Figure:
    """An empty figure with a rows x cols grid of panels (row-major), built directly.

    plotly's ``make_subplots``/``add_vline`` are slow for many panels; this lays the
    axes out in one go so that a slider rerun stays fast.
    """
    lines = max((t.count("<br>") + 1 for t in titles if t), default=0)
    lay = base_layout(theme, title, height, legend, panel_title_lines=lines)
    w = (1 - hspace * (cols - 1)) / cols
    h = (1 - vspace * (rows - 1)) / rows
    notes = []
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        x0 = c * (w + hspace)
        y1 = 1 - r * (h + vspace)
        xr, yr = ref(i)
        lay["xaxis" + xr[1:]] = dict(domain=[max(0.0, x0), min(1.0, x0 + w)], anchor=yr,
                                     automargin=True)
        lay["yaxis" + yr[1:]] = dict(domain=[max(0.0, y1 - h), min(1.0, y1)], anchor=xr,
                                     automargin=True)
        if i < len(titles) and titles[i]:
            notes.append(dict(text=titles[i], x=x0 + w / 2, y=y1, xref="paper", yref="paper",
                              xanchor="center", yanchor="bottom", showarrow=False,
                              font=dict(size=12)))
    lay["annotations"] = notes
    lay["shapes"] = []
    return go.Figure(layout=lay)


def vline(i: int, x: float, color: str, **line) -> dict:
    xr, yr = ref(i)
    return dict(type="line", xref=xr, yref=f"{yr} domain", x0=x, x1=x, y0=0, y1=1,
                line={"dash": "dash", "color": color, "width": 2, **line})


def hline(i: int, y: float, color: str, **line) -> dict:
    xr, yr = ref(i)
    return dict(type="line", xref=f"{xr} domain", yref=yr, x0=0, x1=1, y0=y, y1=y,
                line={"dash": "dash", "color": color, "width": 2, **line})


def axes(fig: go.Figure, i: int, x: dict | None = None, y: dict | None = None) -> None:
    xr, yr = ref(i)
    if x:
        fig.layout["xaxis" + xr[1:]].update(x)
    if y:
        fig.layout["yaxis" + yr[1:]].update(y)


def stamped(fig: go.Figure, stamp: str) -> go.Figure:
    """A copy of ``fig`` whose title starts with a line naming what it shows (bundle,
    method, setting), so a figure file read on its own says where it comes from. The top
    margin, the height and the title and legend positions grow by the added lines, so the
    plot area and the legend keep their place relative to the panels."""
    out = go.Figure(fig)
    head = wrap_title(plain_text(stamp), TITLE_CHARS + 30)
    added = 20 * (head.count("<br>") + 1)
    lay = out.layout
    old_total = float(lay.height or 450)
    old_top = float(lay.margin.t if lay.margin.t is not None else 80)
    total = old_total + added
    legend_top = (1 - float(lay.legend.y)) * old_total if lay.legend.y is not None else None
    text = lay.title.text or ""
    out.update_layout(height=total, margin=dict(t=old_top + added),
                      title=dict(text=f"<b>{head}</b>" + (f"<br>{text}" if text else ""),
                                 x=0, xanchor="left", xref="container", y=1 - 20 / total,
                                 yanchor="top", yref="container"))
    if legend_top is not None and lay.legend.yref == "container":
        out.update_layout(legend=dict(y=1 - (legend_top + added) / total))
    return out
