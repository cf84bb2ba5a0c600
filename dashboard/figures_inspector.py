"""The inspector's figures (pure): one sample's sorted activations before and after
shaping, its top-5 class probabilities, and the placeholder drawn where no image exists."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ash_core.samples import SampleInspection
from dashboard.figure_style import (
    KEPT_COLOR,
    axes,
    hline,
    panel,
    plain_text,
    subplots,
    theme_of,
)


def activations_figure(insp: SampleInspection, setting: str, max_units: int = 512, *,
                       titles: tuple[str, str] | None = None,
                       theme: str | None = None) -> go.Figure:
    """The sample's activations sorted (largest first), before and after shaping.

    Kept units (``SampleInspection.kept``: the shaping's own survivors) are highlighted,
    and the legend counts them over every unit; at most ``max_units`` bars are drawn and
    the title says so when there are more. The dashed line is the
    method's cut (threshold) in activation units. ``titles`` replaces the two panels'
    titles (a method that reads other features than it shapes: ODIN).
    """
    th = theme_of(theme)
    n = min(len(insp.before), max_units)
    x = np.arange(n)
    units = insp.units[:n]
    kept_label = f"kept ({insp.n_kept})"
    pruned_label = f"pruned ({len(insp.kept) - insp.n_kept})"
    fig = subplots(1, 2, titles or ("before shaping", f"after shaping ({setting})"), theme=th,
                   height=360, legend=(kept_label, pruned_label),
                   title="Activations of this sample, sorted (red: kept units)"
                         + (f"; the {n} largest of its {len(insp.before)} units drawn"
                            if n < len(insp.before) else ""))
    colors = np.where(insp.kept[:n], KEPT_COLOR, th.base)
    for c, values in ((1, insp.before[:n]), (2, insp.after[:n])):
        fig.add_bar(x=x, y=values, marker_color=colors, name="activation",
                    customdata=units, showlegend=False, **panel(c),
                    hovertemplate="unit %{customdata}: %{y:.4g}<extra></extra>")
    fig.add_scatter(x=[None], y=[None], mode="markers", name=kept_label,
                    marker=dict(color=KEPT_COLOR, symbol="square"))
    fig.add_scatter(x=[None], y=[None], mode="markers", name=pruned_label,
                    marker=dict(color=th.base, symbol="square"))
    if insp.threshold_value is not None:
        fig.update_layout(shapes=[hline(0, insp.threshold_value, th.ink)])
        fig.add_annotation(x=1, xref="x domain", y=insp.threshold_value, yref="y",
                           text=f"{insp.threshold_kind} = {insp.threshold_value:.3g}",
                           showarrow=False, xanchor="right", yanchor="bottom")
    for c in (1, 2):
        axes(fig, c - 1, x=dict(title_text="units, sorted by activation before"))
    axes(fig, 0, y=dict(title_text="activation"))
    fig.update_layout(bargap=0.05)
    return fig


def topk_figure(insp: SampleInspection, setting: str, *, theme: str | None = None
                ) -> go.Figure:
    """Top-5 class probabilities before and after shaping (in %)."""
    th = theme_of(theme)
    fig = subplots(1, 2, ("no shaping", setting), theme=th, height=280, hspace=0.22,
                   title="Top-5 class probabilities")
    for c, (df, color, name) in enumerate(((insp.top_before, th.base, "no shaping"),
                                           (insp.top_after, KEPT_COLOR, setting)), start=1):
        fig.add_bar(y=[plain_text(c) for c in df["class"][::-1]],
                    x=100 * df["probability"][::-1], orientation="h",
                    marker_color=color, showlegend=False, name=name, **panel(c),
                    hovertemplate="%{y}: %{x:.2f}%<extra></extra>")
        axes(fig, c - 1, x=dict(title_text="probability (%)", range=[0, 100]))
    return fig


def placeholder_image(size: int = 96) -> np.ndarray:
    """A neutral grey square with a diagonal cross, shown when no image is available."""
    img = np.full((size, size, 3), 230, dtype=np.uint8)
    idx = np.arange(size)
    img[idx, idx] = 150
    img[idx, size - 1 - idx] = 150
    return img
