"""Pure figure builders: plain data in, plotly Figure out. No Streamlit, no metrics maths.

Metric fractions are shown in percent. Every OOD set has one colour everywhere
(``set_colors``); ID is always the same blue; "no shaping" is always dashed/grey.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ash_core.curves import Curve, Histogram
from ash_core.samples import SampleInspection

ID_COLOR = "#4C78A8"
BASE_COLOR = "#9A9A9A"
KEPT_COLOR = "#E45756"
OOD_PALETTE = ("#F58518", "#54A24B", "#B279A2", "#E45756", "#72B7B2", "#EECA3B",
               "#9D755D", "#FF9DA6", "#BAB0AC", "#2CA02C", "#8C564B", "#17BECF")
METHOD_PALETTE = ("#7F7F7F", "#4C78A8", "#F58518", "#E45756", "#72B7B2", "#54A24B",
                  "#B279A2", "#EECA3B", "#9D755D")
METRIC_LABELS = {"fpr95": "FPR95", "auroc": "AUROC", "aupr_in": "AUPR-In",
                 "aupr_out": "AUPR-Out", "id_acc": "ID accuracy"}
#: above this many points scatters use WebGL
WEBGL_POINTS = 1000
_LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=60, b=50),
               font=dict(size=13), legend=dict(orientation="h", y=-0.22))


def set_colors(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per OOD set (by position in the bundle's OOD list)."""
    return {n: OOD_PALETTE[i % len(OOD_PALETTE)] for i, n in enumerate(names)}


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    return {m: METHOD_PALETTE[i % len(METHOD_PALETTE)] for i, m in enumerate(methods)}


def convention_label(convention: str) -> str:
    return "ID positive" if convention == "id" else "OOD positive"


def _grid(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return max(1, math.ceil(n / ncols)), ncols


def _ref(i: int) -> tuple[str, str]:
    """Axis references ("x3", "y3") of the i-th panel (0-based)."""
    return (f"x{i + 1}", f"y{i + 1}") if i else ("x", "y")


def _subplots(rows: int, cols: int, titles: Sequence[str] = (), hspace: float = 0.08,
              vspace: float = 0.1, **layout) -> go.Figure:
    """An empty figure with a rows x cols grid of panels (row-major), built directly.

    plotly's ``make_subplots``/``add_vline`` are slow for many panels; this lays the
    axes out in one go so that a slider rerun stays fast.
    """
    lay: dict = {**_LAYOUT, **layout}
    w = (1 - hspace * (cols - 1)) / cols
    h = (1 - vspace * (rows - 1)) / rows
    notes = []
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        x0 = c * (w + hspace)
        y1 = 1 - r * (h + vspace)
        xr, yr = _ref(i)
        lay["xaxis" + xr[1:]] = dict(domain=[x0, x0 + w], anchor=yr)
        lay["yaxis" + yr[1:]] = dict(domain=[y1 - h, y1], anchor=xr)
        if i < len(titles) and titles[i]:
            notes.append(dict(text=titles[i], x=x0 + w / 2, y=y1, xref="paper", yref="paper",
                              xanchor="center", yanchor="bottom", showarrow=False,
                              font=dict(size=14)))
    lay["annotations"] = notes
    lay["shapes"] = []
    return go.Figure(layout=lay)


def _vline(i: int, x: float, **line) -> dict:
    xr, yr = _ref(i)
    return dict(type="line", xref=xr, yref=f"{yr} domain", x0=x, x1=x, y0=0, y1=1,
                line={"dash": "dash", "color": "black", "width": 1.5, **line})


def _hline(i: int, y: float, **line) -> dict:
    xr, yr = _ref(i)
    return dict(type="line", xref=f"{xr} domain", yref=yr, x0=0, x1=1, y0=y, y1=y,
                line={"dash": "dash", "color": "black", "width": 1.5, **line})


def _rc(c: int) -> dict:
    """Trace keyword arguments placing it in panel ``c`` (1-based, row-major)."""
    xr, yr = _ref(c - 1)
    return dict(xaxis=xr, yaxis=yr)


def _axes(fig: go.Figure, i: int, x: dict | None = None, y: dict | None = None) -> None:
    xr, yr = _ref(i)
    if x:
        fig.layout["xaxis" + xr[1:]].update(x)
    if y:
        fig.layout["yaxis" + yr[1:]].update(y)


# --------------------------------------------------------------------------- overview


def overview_figure(metrics: pd.DataFrame, colors: Mapping[str, str], setting: str,
                    convention: str) -> go.Figure:
    """AUROC and FPR95 per OOD set (and Average): no shaping vs shaped, in %.

    ``metrics`` has columns ood_set, auroc, fpr95 and their ``*_delta`` against no shaping.
    """
    fig = _subplots(1, 2, ("AUROC (%) - higher is better", "FPR95 (%) - lower is better"))
    sets = list(metrics["ood_set"])
    for col, m in enumerate(("auroc", "fpr95"), start=1):
        shaped = 100 * metrics[m].to_numpy()
        base = shaped - 100 * metrics[f"{m}_delta"].to_numpy()
        fig.add_bar(x=sets, y=base, name="no shaping", marker_color=BASE_COLOR,
                    legendgroup="base", showlegend=col == 1, **_rc(col),
                    hovertemplate="%{x}: %{y:.2f}%<extra>no shaping</extra>")
        fig.add_bar(x=sets, y=shaped, name=setting, legendgroup="shaped", showlegend=col == 1,
                    marker_color=[colors.get(s, ID_COLOR) for s in sets], **_rc(col),
                    hovertemplate="%{x}: %{y:.2f}%<extra>" + setting + "</extra>")
        _axes(fig, col - 1, y=dict(title_text=f"{METRIC_LABELS[m]} (%)"))
    fig.update_layout(barmode="group", height=380,
                      title=f"OOD detection per set: {setting} vs no shaping "
                            f"(FPR convention: {convention_label(convention)})", **_LAYOUT)
    return fig


# --------------------------------------------------------------------------- distributions


def distributions_figure(before: Histogram, after: Histogram, id_name: str,
                         thr_before: float, thr_after: float, colors: Mapping[str, str],
                         setting: str, score: str) -> go.Figure:
    """ID vs each OOD set, density-normalised and overlaid: no shaping (left) vs shaped.

    ``before``/``after`` hold one density per set on shared edges (key ``id_name`` is ID).
    The dashed vertical line is the threshold that keeps 95% of ID samples (TPR 95%).
    """
    fig = _subplots(1, 2, ("no shaping", setting), height=460,
                    title=f"Score distributions, ID vs each OOD set (dashed: threshold keeping "
                          f"95% of ID, TPR 95%) - {setting}")
    shapes = []
    for i, (h, thr) in enumerate(((before, thr_before), (after, thr_after))):
        xr, yr = _ref(i)
        for name, dens in h.densities.items():
            is_id = name == id_name
            fig.add_scatter(
                x=h.centers, y=dens, xaxis=xr, yaxis=yr, mode="lines", line_shape="hvh",
                name=f"{name} (ID)" if is_id else name, legendgroup=name, showlegend=i == 0,
                line=dict(color=ID_COLOR if is_id else colors.get(name, "#F58518"),
                          width=1.5 if is_id else 2),
                fill="tozeroy" if is_id else None, opacity=1.0,
                hovertemplate="score %{x:.3g}: density %{y:.3g}<extra>" + name + "</extra>")
        shapes.append(_vline(i, thr))
        _axes(fig, i, x=dict(title_text=f"{score} score"),
              y=dict(title_text="density" if i == 0 else None))
    fig.update_layout(shapes=shapes)
    return fig


# --------------------------------------------------------------------------- curves


def curves_figure(curves: Mapping[str, tuple[Curve, Curve]], kind: str,
                  colors: Mapping[str, str], setting: str, convention: str,
                  ncols: int = 4) -> go.Figure:
    """ROC (kind="roc") or PR (kind="pr") curves per OOD set: no shaping dashed, shaped solid."""
    names = list(curves)
    rows, cols = _grid(len(names), ncols)
    pos = convention_label(convention)
    xl, yl = (("FPR (%)", "TPR (%)") if kind == "roc" else ("recall (%)", "precision (%)"))
    what = "ROC" if kind == "roc" else "Precision-recall"
    fig = _subplots(rows, cols, names, hspace=0.06, vspace=min(0.22, 0.7 / rows),
                    height=80 + 300 * rows,
                    title=f"{what} curves per OOD set ({pos}): {setting} vs no shaping")
    for i, name in enumerate(names):
        xr, yr = _ref(i)
        base, shaped = curves[name]
        if kind == "roc":
            fig.add_scatter(x=[0, 100], y=[0, 100], mode="lines", showlegend=False,
                            line=dict(color="#DDDDDD", width=1), hoverinfo="skip",
                            xaxis=xr, yaxis=yr)
        fig.add_scatter(x=100 * base.x, y=100 * base.y, mode="lines", name="no shaping",
                        line=dict(color=BASE_COLOR, dash="dash"), legendgroup="base",
                        showlegend=i == 0, xaxis=xr, yaxis=yr)
        fig.add_scatter(x=100 * shaped.x, y=100 * shaped.y, mode="lines", name=setting,
                        line=dict(color=colors.get(name, ID_COLOR), width=2.5),
                        legendgroup="shaped", showlegend=i == 0, xaxis=xr, yaxis=yr)
        _axes(fig, i, x=dict(title_text=xl, range=[0, 100]),
              y=dict(title_text=yl if i % cols == 0 else None, range=[0, 101]))
    return fig


# --------------------------------------------------------------------------- trade-off


def tradeoff_figure(df: pd.DataFrame, current_p: float | None, convention: str,
                    colors: Mapping[str, str] | None = None) -> go.Figure:
    """ID accuracy, average AUROC and average FPR95 against p, one line per method.

    Methods without p (``none``) are drawn as horizontal dotted lines; the current p
    is the vertical dashed line.
    """
    methods = list(dict.fromkeys(df["method"]))
    colors = colors or method_colors(methods)
    panels = (("id_acc", "ID accuracy (%)"), ("average/auroc", "average AUROC (%)"),
              ("average/fpr95", f"average FPR95 (%, {convention_label(convention)})"))
    fig = _subplots(1, 3, [t for _, t in panels], hspace=0.07)
    shapes = []
    for c, (col, title) in enumerate(panels, start=1):
        for m in methods:
            d = df[df["method"] == m]
            if d["p"].isna().all():
                shapes.append(_hline(c - 1, 100 * float(d[col].iloc[0]), color=colors[m],
                                     dash="dot"))
                fig.add_scatter(x=[None], y=[None], mode="lines", name=m,
                                line=dict(color=colors[m], dash="dot"), legendgroup=m,
                                showlegend=c == 1, **_rc(c))
                continue
            fig.add_scatter(x=d["p"], y=100 * d[col], mode="lines+markers", name=m,
                            line=dict(color=colors[m]), marker=dict(size=4),
                            legendgroup=m, showlegend=c == 1, **_rc(c),
                            hovertemplate="p=%{x}: %{y:.2f}%<extra>" + m + "</extra>")
        if current_p is not None:
            shapes.append(_vline(c - 1, current_p))
        _axes(fig, c - 1, x=dict(title_text="pruning percentile p", range=[0, 100]))
        _axes(fig, c - 1, y=dict(title_text=title))
    fig.update_layout(shapes=shapes)
    fig.update_layout(height=420, title="Trade-off over p: accuracy vs pruning, OOD vs pruning "
                                        "(dashed: current p)", **_LAYOUT)
    return fig


def pareto_figure(df: pd.DataFrame, front: pd.DataFrame, y: str, convention: str,
                  current: tuple[str, float, float] | None = None,
                  colors: Mapping[str, str] | None = None) -> go.Figure:
    """ID accuracy vs an OOD metric for every (method, p); the Pareto front as a line.

    ``current`` = (label, ID accuracy, metric value), fractions: the setting on screen,
    starred (it need not lie on the sweep's grid).
    """
    methods = list(dict.fromkeys(df["method"]))
    colors = colors or method_colors(methods)
    scatter = go.Scattergl if len(df) > WEBGL_POINTS else go.Scatter
    metric = y.split("/")[-1]
    fig = go.Figure()
    for m in methods:
        d = df[df["method"] == m]
        fig.add_trace(scatter(
            x=100 * d["id_acc"], y=100 * d[y], mode="markers", name=m,
            marker=dict(color=colors[m], size=8, opacity=0.8),
            text=[f"{m} p={p:g}" if p == p else m for p in d["p"]],
            hovertemplate="%{text}<br>ID acc %{x:.2f}%<br>" + METRIC_LABELS[metric]
                          + " %{y:.2f}%<extra></extra>"))
    if not front.empty:
        fig.add_trace(scatter(x=100 * front["id_acc"], y=100 * front[y], mode="lines",
                              name="Pareto front", line=dict(color="black", dash="dash")))
    if current is not None and current[1] is not None:
        label, acc, value = current
        fig.add_trace(go.Scatter(x=[100 * acc], y=[100 * value], mode="markers",
                                 name=f"current: {label}", text=[label],
                                 hovertemplate="%{text}<br>ID acc %{x:.2f}%<br>"
                                               + METRIC_LABELS[metric] + " %{y:.2f}%"
                                               "<extra></extra>",
                                 marker=dict(symbol="star", size=18, color="gold",
                                             line=dict(color="black", width=1))))
    fig.update_layout(height=460, xaxis_title="ID accuracy (%)",
                      yaxis_title=f"average {METRIC_LABELS[metric]} (%, "
                                  f"{convention_label(convention)})",
                      title="Pareto view: ID accuracy vs OOD performance, all methods and p",
                      **_LAYOUT)
    return fig


# --------------------------------------------------------------------------- inspector


def activations_figure(insp: SampleInspection, setting: str, max_units: int = 512) -> go.Figure:
    """The sample's activations sorted (largest first), before and after shaping.

    Kept units (non-zero after shaping) are highlighted; the dashed line is the
    method's cut (threshold) in activation units.
    """
    n = min(len(insp.before), max_units)
    x = np.arange(n)
    units = insp.units[:n]
    fig = _subplots(1, 2, ("before shaping", f"after shaping ({setting})"))
    kept = insp.kept[:n]
    before_colors = np.where(kept, KEPT_COLOR, BASE_COLOR)
    fig.add_bar(x=x, y=insp.before[:n], marker_color=before_colors, name="activation",
                customdata=units, showlegend=False, **_rc(1),
                hovertemplate="unit %{customdata}: %{y:.4g}<extra></extra>")
    fig.add_bar(x=x, y=insp.after[:n], marker_color=np.where(kept, KEPT_COLOR, BASE_COLOR),
                customdata=units, showlegend=False, **_rc(2),
                hovertemplate="unit %{customdata}: %{y:.4g}<extra></extra>")
    fig.add_scatter(x=[None], y=[None], mode="markers", name=f"kept ({insp.n_kept})",
                    marker=dict(color=KEPT_COLOR, symbol="square"))
    fig.add_scatter(x=[None], y=[None], mode="markers",
                    name=f"pruned ({len(insp.kept) - insp.n_kept})",
                    marker=dict(color=BASE_COLOR, symbol="square"))
    if insp.threshold_value is not None:
        fig.update_layout(shapes=[_hline(0, insp.threshold_value)])
        fig.add_annotation(x=1, xref="x domain", y=insp.threshold_value, yref="y",
                           text=f"{insp.threshold_kind} = {insp.threshold_value:.3g}",
                           showarrow=False, xanchor="right", yanchor="bottom")
    for c in (1, 2):
        _axes(fig, c - 1, x=dict(title_text="units, sorted by activation before shaping"))
    _axes(fig, 1 - 1, y=dict(title_text="activation"))
    fig.update_layout(height=380, bargap=0.05,
                      title="Activations of this sample (red: kept units)", **_LAYOUT)
    return fig


def topk_figure(insp: SampleInspection, setting: str) -> go.Figure:
    """Top-5 class probabilities before and after shaping (in %)."""
    fig = _subplots(1, 2, ("no shaping", setting), hspace=0.2)
    for c, (df, color) in enumerate(((insp.top_before, BASE_COLOR),
                                     (insp.top_after, KEPT_COLOR)), start=1):
        fig.add_bar(y=df["class"][::-1], x=100 * df["probability"][::-1], orientation="h",
                    marker_color=color, showlegend=False, **_rc(c),
                    hovertemplate="%{y}: %{x:.2f}%<extra></extra>")
        _axes(fig, c - 1, x=dict(title_text="probability (%)", range=[0, 100]))
    fig.update_layout(height=300, title="Top-5 class probabilities", **_LAYOUT)
    return fig


def placeholder_image(size: int = 96) -> np.ndarray:
    """A neutral grey square with a diagonal cross, shown when no image is available."""
    img = np.full((size, size, 3), 230, dtype=np.uint8)
    idx = np.arange(size)
    img[idx, idx] = 150
    img[idx, size - 1 - idx] = 150
    return img


# --------------------------------------------------------------------------- compare


def compare_figure(a: pd.DataFrame, b: pd.DataFrame, label_a: str, label_b: str,
                   convention: str) -> go.Figure:
    """AUROC and FPR95 per OOD set (and Average) for two settings side by side, in %."""
    fig = _subplots(1, 2, ("AUROC (%)", "FPR95 (%)"))
    for col, m in enumerate(("auroc", "fpr95"), start=1):
        for df, label, color in ((a, label_a, ID_COLOR), (b, label_b, "#F58518")):
            fig.add_bar(x=df["ood_set"], y=100 * df[m], name=label, marker_color=color,
                        legendgroup=label, showlegend=col == 1, **_rc(col),
                        hovertemplate="%{x}: %{y:.2f}%<extra>" + label + "</extra>")
        _axes(fig, col - 1, y=dict(title_text=f"{METRIC_LABELS[m]} (%)"))
    fig.update_layout(barmode="group", height=380,
                      title=f"A: {label_a} vs B: {label_b} ({convention_label(convention)})",
                      **_LAYOUT)
    return fig
