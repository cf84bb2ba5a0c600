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

from ash_core import list_methods
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

#: where each point's label sits, alternating so that close points do not overprint
LABEL_SIDES = ("middle right", "middle left", "top center", "bottom center")
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
    every = method_colors(list_methods())
    fallback = method_colors(list(methods))
    return {m: every.get(m, fallback[m]) for m in methods}


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
    pts = pts.sort_values("value")
    fig.add_scatter(x=100 * pts["id_acc"], y=100 * pts["value"], mode="markers+text",
                    name="other methods", text=[plain_text(t) for t in pts["method"]],
                    textposition=[LABEL_SIDES[i % len(LABEL_SIDES)] for i in range(len(pts))],
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
    fig.update_layout(xaxis=dict(title_text="ID accuracy (%)", range=focus(
                          [*pts["id_acc"], *data.front["id_acc"]])),
                      yaxis=dict(range=focus([*pts["value"], *data.front["value"]])))
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
