"""Figures of the across-bundles comparison (pure: frames in, plotly Figure out).

``across_heatmaps``: method x bundle heatmaps of near-OOD AUROC, far-OOD AUROC and ID
accuracy, side by side; ``gains_heatmap``: each shaping method's gain or loss against no
shaping per bundle and group, on a diverging scale centred on 0 (green gains, red losses).
Every cell carries its number, so the picture reads in print and without colour.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.figure_style import base_layout, panel, plain_text, subplots, theme_of

SEQUENTIAL = "Viridis"
DIVERGING = [[0.0, "#C0392B"], [0.5, "#F2F2F2"], [1.0, "#1E8449"]]


def _cells(table: pd.DataFrame, fmt: str) -> list[list[str]]:
    return [["" if v != v else fmt.format(v) for v in row] for row in table.to_numpy()]


def across_heatmaps(tables: dict[str, pd.DataFrame], *, theme: str | None = None
                    ) -> go.Figure:
    """One heatmap per entry of ``tables`` (title -> method x bundle table, fractions),
    values in %; rows are methods, columns bundles."""
    th = theme_of(theme)
    names = list(tables)
    first = next(iter(tables.values()))
    height = 140 + 34 * len(first.index)
    fig = subplots(1, len(names), [plain_text(n) for n in names], theme=th, height=height,
                   hspace=0.09, title="Across bundles: every shaping method at its default "
                                      "parameters (AUROC and ID accuracy in %)")
    for c, (name, table) in enumerate(tables.items(), start=1):
        z = 100 * table.to_numpy(dtype=float)
        fig.add_trace(go.Heatmap(
            z=z, x=[plain_text(b) for b in table.columns],
            y=[plain_text(m) for m in table.index], text=_cells(100 * table, "{:.1f}"),
            texttemplate="%{text}", colorscale=SEQUENTIAL, showscale=False,
            hovertemplate="%{y} on %{x}: %{z:.2f}%<extra>" + plain_text(name) + "</extra>",
            **panel(c)))
        fig.layout["yaxis" + ("" if c == 1 else str(c))].update(
            autorange="reversed", showticklabels=c == 1)
    return fig


def gains_heatmap(gains: pd.DataFrame, *, theme: str | None = None) -> go.Figure:
    """Shaping method x (bundle, group): the method's AUROC minus no shaping's, in
    percentage points; green is a gain, red a loss, the scale symmetric around 0."""
    th = theme_of(theme)
    z = 100 * gains.to_numpy(dtype=float)
    span = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    # two-level axis: the groups under each bundle's one label (labels never overprint)
    cols = [[plain_text(b) for b, _ in gains.columns], [g for _, g in gains.columns]]
    fig = go.Figure(layout=base_layout(
        th, "Gain or loss against no shaping per bundle and OOD group (AUROC, pp; green: "
            "better, red: worse)", 140 + 34 * len(gains.index)))
    fig.add_trace(go.Heatmap(
        z=z, x=cols, y=[plain_text(m) for m in gains.index],
        text=_cells(100 * gains, "{:+.1f}"), texttemplate="%{text}", colorscale=DIVERGING,
        zmin=-span, zmax=span, colorbar=dict(title="pp", thickness=12),
        hovertemplate="%{y}: %{z:+.2f} pp<extra></extra>"))
    fig.update_layout(yaxis=dict(autorange="reversed"), xaxis=dict(tickangle=0))
    return fig
