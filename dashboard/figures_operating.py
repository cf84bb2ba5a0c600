"""The operating point drawn on existing figures: a threshold line on the shaped panel of
the score distributions, a marker per OOD set on the ROC or PR curves. Pure: figure and plain
numbers in, the same figure (with the marks added) out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from dashboard.figure_style import ref, theme_of, vline

#: the mark of the operating point (a colour that is no set's and reads on both themes)
OP_COLOR = "#d62728"


def mark_threshold(fig: go.Figure, threshold: float, label: str, panel: int = 1, *,
                   theme: str | None = None) -> go.Figure:
    """A solid line at ``threshold`` on panel ``panel`` (0-based; the distributions
    figure's shaped panel is 1), labelled at its top, with a legend entry."""
    th = theme_of(theme)
    fig.add_shape(**vline(panel, threshold, OP_COLOR, dash="solid", width=2.5))
    xr, yr = ref(panel)
    fig.add_annotation(x=threshold, xref=xr, y=1.0, yref=f"{yr} domain", text=label,
                       showarrow=False, yanchor="bottom", font=dict(color=th.ink, size=11))
    fig.add_scatter(x=[None], y=[None], mode="lines", name=f"operating point: {label}",
                    line=dict(color=OP_COLOR, width=2.5))
    return fig


def mark_points(fig: go.Figure, names: Sequence[str],
             points: Mapping[str, tuple[float | None, float | None]], label: str
             ) -> go.Figure:
    """On each OOD set's curve panel (``names``: the panels' order), the operating point
    as (x, y) fractions: (FPR, TPR) on ROC, (recall, precision) on PR; a set whose rates
    are undefined is left unmarked."""
    for i, name in enumerate(names):
        fpr, tpr = points.get(name, (None, None))
        if fpr is None or tpr is None:
            continue
        xr, yr = ref(i)
        fig.add_scatter(x=[100 * fpr], y=[100 * tpr], mode="markers", xaxis=xr, yaxis=yr,
                        name=f"operating point: {label}", legendgroup="opp",
                        showlegend=i == 0,
                        marker=dict(color=OP_COLOR, size=12, symbol="diamond"),
                        hovertemplate=f"{label}: (%{{x:.2f}}%, %{{y:.2f}}%)"
                                      f"<extra>{name}</extra>")
    return fig
