"""Figures of the method comparison (pure: plain data in, plotly Figure out).

``figure1``: the ASH paper's Figure 1 live: ID accuracy against an average OOD metric,
the ASH variants as lines over p, every other method a labelled point, the Pareto front
drawn and its members named. ``overlay_histograms`` / ``overlay_roc``: up to four
methods' ID vs pooled-OOD score histograms (one panel each: their scores are on different
scales) and ROC curves (one axes). Theme-aware through ``figure_style``; every
bundle- or registry-supplied string goes through ``plain_text``.
"""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go

from ash_core.reports.leaderboard import Figure1
from ash_core.reports.overlay import ID_KEY, OOD_KEY, MethodScores
from dashboard.figure_style import (
    ID_COLOR,
    METHOD_PALETTE,
    METRIC_LABELS,
    OOD_PALETTE,
    axes,
    base_layout,
    convention_label,
    method_colors,
    plain_text,
    ref,
    subplots,
    theme_of,
)

#: where a point's label may sit, in the order tried (``place_labels``)
LABEL_SIDES = ("middle right", "middle left", "top center", "bottom center", "top right",
               "bottom right", "top left", "bottom left")
#: the plot area Figure 1's labels are laid out for (px): about the chart at 800 px
PLOT_PX = (640, 300)
CHAR_PX, LINE_PX, MARKER_PX = 7.0, 14.0, 7.0


def _box(side: str, x: float, y: float, label: str) -> tuple[float, float, float, float]:
    """The pixel box (x0, y0, x1, y1) a label takes at ``side`` of the point (x, y)."""
    w, h = CHAR_PX * len(label), LINE_PX
    vert, horiz = side.split()
    x0 = {"right": x + MARKER_PX, "left": x - MARKER_PX - w, "center": x - w / 2}[horiz]
    y0 = {"top": y + MARKER_PX, "bottom": y - MARKER_PX - h, "middle": y - h / 2}[vert]
    return x0, y0, x0 + w, y0 + h


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(xs, ys, labels, x_range, y_range, plot_px=PLOT_PX) -> list[str | None]:
    """A text position per point such that no label overlaps another label or a marker
    (greedy, in the order given: the first free side of ``LABEL_SIDES``); None where no
    side is free: that point is named in hover and under the chart instead."""
    (x0, x1), (y0, y1) = x_range, y_range
    sx = plot_px[0] / max(x1 - x0, 1e-9)
    sy = plot_px[1] / max(y1 - y0, 1e-9)
    pts = [((x - x0) * sx, (y - y0) * sy) for x, y in zip(xs, ys, strict=True)]
    taken = [(px - MARKER_PX, py - MARKER_PX, px + MARKER_PX, py + MARKER_PX)
             for px, py in pts]
    out: list[str | None] = []
    for (px, py), label in zip(pts, labels, strict=True):
        chosen = None
        for side in LABEL_SIDES:
            box = _box(side, px, py, label)
            inside = box[0] >= 0 and box[2] <= plot_px[0] and box[1] >= 0 and \
                box[3] <= plot_px[1]
            mine = (px - MARKER_PX, py - MARKER_PX, px + MARKER_PX, py + MARKER_PX)
            if inside and not any(_overlaps(box, t) for t in taken if t != mine):
                chosen = side
                taken.append(box)
                break
        out.append(chosen)
    return out
#: the share of the points' span added around them by ``focus``
FOCUS_MARGIN = 0.15


def focus(values) -> list[float] | None:
    """An axis range (%) around the points and the front, where the comparison is; the
    ASH curves run on beyond it (zoom out in the chart). None: let plotly choose."""
    v = [100 * float(x) for x in values if x == x]
    if not v:
        return None
    lo, hi = min(v), max(v)
    pad = max(FOCUS_MARGIN * (hi - lo), 1.0)
    return [lo - pad, hi + pad]


#: the dash of each overlaid method's OOD histogram / ROC line, by position
DASHES = ("solid", "dash", "dot", "dashdot")


def colors_for(methods) -> dict[str, str]:
    """One colour per method, by its registry position (stable across views)."""
    return method_colors(list(methods))


def overlay_colors(labels) -> dict[str, str]:
    """Distinct colours by position (at most four overlaid methods), never the grey of no
    shaping nor the blue of ID (the histograms fill ID in it)."""
    palette = [c for c in METHOD_PALETTE if c not in (ID_COLOR, METHOD_PALETTE[0])]
    return {lab: palette[i % len(palette)] for i, lab in enumerate(labels)}


def _hover(metric: str) -> str:
    return ("%{text}<br>ID accuracy %{x:.2f}%<br>avg " + METRIC_LABELS[metric]
            + " %{y:.2f}%<extra></extra>")


def figure1(data: Figure1, convention: str, current: tuple[str, float | None] | None = None,
            *, theme: str | None = None) -> go.Figure:
    """ID accuracy (%) vs average AUROC or FPR95 (%): lines over p, points, Pareto front.

    ``current`` = (method, p): that method's curve point nearest p is starred.
    """
    th = theme_of(theme)
    metric = data.metric
    curved = list(dict.fromkeys(data.curves["method"]))
    colors = colors_for([*curved, *data.points["method"]])
    legend = [*curved, "other methods", "Pareto front"]
    better = "higher" if data.maximize else "lower"
    fig = go.Figure(layout=base_layout(
        th, f"ID accuracy vs average {METRIC_LABELS[metric]} ({better} is better): ASH "
            "variants over p, other methods at their parameters, Pareto front dashed", 480,
        legend))
    for m in curved:
        d = data.curves[data.curves["method"] == m].sort_values("p")
        fig.add_scatter(x=100 * d["id_acc"], y=100 * d["value"], mode="lines+markers",
                        name=m, line=dict(color=colors[m]), marker=dict(size=5),
                        text=[f"{m} p={p:g}" for p in d["p"]], hovertemplate=_hover(metric))
    pts = data.points.dropna(subset=["id_acc", "value"])
    pts = pts.sort_values("value", ascending=not data.maximize)  # the best are named first
    x_range = focus([*pts["id_acc"], *data.front["id_acc"]])
    y_range = focus([*pts["value"], *data.front["value"]])
    sides = place_labels(100 * pts["id_acc"], 100 * pts["value"], list(pts["method"]),
                         x_range, y_range) if x_range and y_range else [None] * len(pts)
    fig.add_scatter(x=100 * pts["id_acc"], y=100 * pts["value"], mode="markers+text",
                    name="other methods", text=[plain_text(t) for t in pts["method"]],
                    textposition=[side or "middle right" for side in sides],
                    texttemplate=["%{text}" if side else "" for side in sides],
                    hovertemplate=_hover(metric),
                    marker=dict(size=10, symbol="diamond", color=[colors[m] for m in
                                                                  pts["method"]],
                                line=dict(color=th.ink, width=1)))
    if not data.front.empty:
        fig.add_scatter(x=100 * data.front["id_acc"], y=100 * data.front["value"],
                        mode="lines+markers", name="Pareto front",
                        text=[plain_text(t) for t in data.front["label"]],
                        hovertemplate=_hover(metric),
                        line=dict(color=th.ink, dash="dash", width=1.5),
                        marker=dict(size=13, symbol="circle-open", color=th.ink))
    _mark_current(fig, data, current, th, metric)
    fig.update_layout(xaxis=dict(title_text="ID accuracy (%)", range=x_range),
                      yaxis=dict(range=y_range))
    crowded = [m for m, side in zip(pts["method"], sides, strict=True) if side is None]
    if crowded:  # named under the chart rather than printed over each other
        fig.add_annotation(text="not labelled for space (hover to see): "
                                + ", ".join(plain_text(m) for m in crowded),
                           x=0, xref="paper", xanchor="left", y=-0.2, yref="paper",
                           yanchor="top", showarrow=False, font=dict(size=11))
        fig.update_layout(margin=dict(b=90))
    fig.update_layout(
                      yaxis_title=f"avg {METRIC_LABELS[metric]} (%, "
                                  f"{convention_label(convention)})")
    return fig


def _mark_current(fig: go.Figure, data: Figure1, current, th, metric: str) -> None:
    if current is None or current[1] is None:
        return
    method, p = current
    d = data.curves[data.curves["method"] == method]
    if d.empty:
        return
    row = d.iloc[int((d["p"] - p).abs().to_numpy().argmin())]
    fig.add_scatter(x=[100 * row["id_acc"]], y=[100 * row["value"]], mode="markers",
                    name=f"current: {method} p={row['p']:g}", showlegend=True,
                    text=[f"current: {method} p={row['p']:g}"], hovertemplate=_hover(metric),
                    marker=dict(symbol="star", size=18, color=th.highlight,
                                line=dict(color=th.ink, width=1)))


def overlay_histograms(data: Mapping[str, MethodScores], score_names: Mapping[str, str],
                       *, theme: str | None = None) -> go.Figure:
    """One panel per method: ID (filled, blue) vs every selected OOD set pooled (orange
    line, as the first OOD set everywhere else).

    ``score_names``: the score each method is evaluated with (its x-axis title)."""
    th = theme_of(theme)
    labels = list(data)
    fig = subplots(1, len(labels), [plain_text(lab) for lab in labels], theme=th,
                   height=380, hspace=0.06, legend=["ID", "OOD (pooled)"],
                   title="Score distributions, ID vs every selected OOD set pooled, one panel "
                         "per method (scores differ in scale)")
    for i, (label, ms) in enumerate(data.items()):
        xr, yr = ref(i)
        h = ms.histogram
        fig.add_scatter(x=h.centers, y=h.densities[ID_KEY], mode="lines", line_shape="hvh",
                        name="ID", legendgroup="id", showlegend=i == 0, fill="tozeroy",
                        line=dict(color=ID_COLOR, width=1.5), xaxis=xr, yaxis=yr)
        fig.add_scatter(x=h.centers, y=h.densities[OOD_KEY], mode="lines", line_shape="hvh",
                        name="OOD (pooled)", legendgroup="ood", showlegend=i == 0,
                        line=dict(color=OOD_PALETTE[0], width=2), xaxis=xr, yaxis=yr)
        axes(fig, i, x=dict(title_text=plain_text(score_names.get(label, "score"))),
             y=dict(title_text="density" if i == 0 else None))
    return fig


def overlay_roc(data: Mapping[str, MethodScores], convention: str, *,
                theme: str | None = None) -> go.Figure:
    """Every method's ROC curve (ID vs pooled OOD) on one axes; legend gives its AUROC."""
    th = theme_of(theme)
    colors = overlay_colors(list(data))
    names = [f"{plain_text(lab)} (AUROC {100 * ms.pooled_auroc:.2f}%)"
             for lab, ms in data.items()]
    fig = go.Figure(layout=base_layout(
        th, f"ROC curves, ID vs every selected OOD set pooled ({convention_label(convention)})",
        420, names))
    fig.add_scatter(x=[0, 100], y=[0, 100], mode="lines", showlegend=False,
                    line=dict(color=th.faint, width=1, dash="dot"), hoverinfo="skip")
    for i, ((label, ms), name) in enumerate(zip(data.items(), names, strict=True)):
        fig.add_scatter(x=100 * ms.roc.x, y=100 * ms.roc.y, mode="lines", name=name,
                        line=dict(color=colors[label], width=2.5, dash=DASHES[i % 4]),
                        hovertemplate="FPR %{x:.2f}%, TPR %{y:.2f}%<extra>"
                                      + plain_text(label) + "</extra>")
    fig.update_layout(xaxis=dict(title_text="FPR (%)", range=[0, 100]),
                      yaxis=dict(title_text="TPR (%)", range=[0, 101]))
    return fig
