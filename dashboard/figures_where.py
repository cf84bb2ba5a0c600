"""Figures of the "Where to ASH" view (pure: plain data in, plotly Figure / frame out).

``figure5``: ID accuracy against p, one line per layer (the ASH paper's Figure 5).
``table6``: FPR95 / AUROC per layer at one p (its Table 6), from rows computed in ash_core.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from dashboard.figure_style import (
    METHOD_PALETTE,
    base_layout,
    convention_label,
    plain_text,
    theme_of,
)


def figure5(grid: Sequence[float], accuracy: Mapping[str, Sequence[float]], method: str,
            current_p: float | None = None, theme: str | None = None) -> go.Figure:
    """ID accuracy (%) against p, one line per layer (network order); dashed line at p."""
    fig = go.Figure()
    for i, (layer, acc) in enumerate(accuracy.items()):
        layer = plain_text(layer)  # a bundle-supplied name
        fig.add_scatter(x=list(grid), y=[100 * a for a in acc], mode="lines+markers",
                        name=layer, line=dict(color=METHOD_PALETTE[(i + 1) % len(METHOD_PALETTE)]),
                        marker=dict(size=5), hovertemplate="p=%{x}: %{y:.2f}%<extra>"
                        + layer + "</extra>")
    if current_p is not None:
        fig.add_vline(x=current_p, line=dict(dash="dash", color="black", width=1.5))
    fig.update_layout(**base_layout(theme_of(theme), f"ID accuracy vs p per layer ({method})",
                                    420, [str(k) for k in accuracy]),
                      xaxis_title="pruning percentile p", yaxis_title="ID accuracy (%)",
                      xaxis_range=[0, 100])
    return fig


def table6(rows: Sequence[Mapping[str, float | str]], convention: str) -> pd.DataFrame:
    """Rows ``{layer, fpr95, auroc, id_accuracy}`` (fractions) as a frame in percent."""
    frame = pd.DataFrame(list(rows)).set_index("layer")
    frame = (100 * frame[["fpr95", "auroc", "id_accuracy"]]).round(2)
    return frame.rename(columns={"fpr95": f"FPR95 ({convention_label(convention)})",
                                 "auroc": "AUROC", "id_accuracy": "ID accuracy"})
