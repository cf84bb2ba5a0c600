"""Reference marks on a parameter axis: the validated p, the test-optimal p, the paper's p.

Pure plotly, no maths: the values come from ``ash_core.search.grid.param_marks``. Every mark
is a vertical line on every subplot of a figure whose x axis is the parameter, explained
once in the legend (labels on each subplot would clutter the trade-off grid).
"""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go

from ash_core.search.grid import ParamMarks
from dashboard.figure_style import vline

#: kind -> (legend words, line dash); in drawing order
MARK_STYLES: dict[str, tuple[str, str]] = {
    "validated": ("validated", "solid"),
    "test_optimal": ("test-optimal", "dashdot"),  # "dash" is the figures' current p
    "recommended": ("paper's", "dot"),
}
FAMILY_NAMES = {"imagenet": "ImageNet", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def mark_values(marks: ParamMarks | None, param: str = "p") -> dict[str, float]:
    """``{kind: value}`` of ``param`` for every mark that exists (kinds of MARK_STYLES)."""
    if marks is None:
        return {}
    found = {"validated": marks.validated, "test_optimal": marks.test_optimal,
             "recommended": marks.recommended}
    return {kind: float(v[param]) for kind, v in found.items() if v and param in v}


def mark_label(kind: str, value: float, marks: ParamMarks | None = None,
               param: str = "p", method: str = "") -> str:
    """Legend words of one mark, e.g. ``ash-s: paper's p=95 (CIFAR-10)``."""
    words = f"{method + ': ' if method else ''}{MARK_STYLES[kind][0]} {param}={value:g}"
    if kind == "recommended" and marks is not None and marks.family:
        words += f" ({FAMILY_NAMES.get(marks.family, marks.family)})"
    return words


def x_axes(fig: go.Figure) -> int:
    """How many x axes (subplots) ``fig`` has (1 for a plain figure)."""
    return max(1, sum(1 for k in fig.layout.to_plotly_json() if k.startswith("xaxis")))


def add_param_marks(fig: go.Figure, marks: ParamMarks | None, *, param: str = "p",
                    method: str = "", color: str = "#444444") -> go.Figure:
    """Draw each existing mark on every subplot of ``fig`` (x = the parameter), in place,
    and name it once in the legend."""
    values: Mapping[str, float] = mark_values(marks, param)
    for kind, value in values.items():
        dash = MARK_STYLES[kind][1]
        for i in range(x_axes(fig)):
            fig.add_shape(vline(i, value, color, dash=dash, width=1.5))
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", hoverinfo="skip",
                                 line={"dash": dash, "color": color, "width": 1.5},
                                 name=mark_label(kind, value, marks, param, method)))
    return fig


def marks_caption(marks: ParamMarks | None, param: str = "p") -> str | None:
    """One line for under the slider: the marks in words, or why there is no validated
    value (None when there is nothing to say)."""
    if marks is None:
        return None
    parts = [mark_label(k, v, marks, param) for k, v in mark_values(marks, param).items()]
    if marks.result is not None:
        parts[0] += f" (on {marks.result.validated_on.describe()})"
    elif marks.missing:
        parts.append("no validated p: this bundle has no id_val/ood_val splits")
    return "; ".join(parts) or None
