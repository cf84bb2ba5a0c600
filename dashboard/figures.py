"""Pure figure builders: plain data in, plotly Figure out. No Streamlit, no metrics maths.

Metric fractions are shown in percent. Every OOD set has one colour everywhere
(``set_colors``); ID is always the same blue; "no shaping" is always grey (dashed for
lines). Every builder takes ``theme`` ("light", "dark" or None = works on both, see
``figure_style``): no mark is hard-coded black or white. Legends sit between the title
and the panels, never over axis labels.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ash_core.maths.curves import Curve, Histogram
from dashboard.figure_style import (  # noqa: F401 - re-exported for the views
    BASE_COLOR,
    ID_COLOR,
    KEPT_COLOR,
    METHOD_PALETTE,
    METRIC_LABELS,
    OOD_PALETTE,
    THEMES,
    axes,
    base_layout,
    convention_label,
    grid,
    hline,
    method_colors,
    panel,
    plain_text,
    ref,
    set_colors,
    subplots,
    theme_of,
    vline,
)
from dashboard.figures_inspector import (  # noqa: F401 - re-exported for the views
    activations_figure,
    placeholder_image,
    topk_figure,
)

#: above this many points scatters use WebGL
WEBGL_POINTS = 1000
#: the shaped bars of the overview (one colour: the legend swatch is the bar colour)
SHAPED_COLOR = ID_COLOR
#: the TPR of the FPR95 operating point
TPR_POINT = 0.95


# --------------------------------------------------------------------------- overview


def overview_figure(metrics: pd.DataFrame, colors: Mapping[str, str], setting: str,
                    convention: str, *, theme: str | None = None) -> go.Figure:
    """AUROC and FPR95 per OOD set (and Average): no shaping vs shaped, in %.

    ``metrics`` has columns ood_set, auroc, fpr95 and their ``*_delta`` against no shaping.
    Shaped bars share one colour so that the legend's swatch is exactly the bars' colour
    (``colors`` is accepted for a uniform signature; the x axis names the sets).
    """
    th = theme_of(theme)
    fig = subplots(1, 2, ("AUROC (%), higher is better", "FPR95 (%), lower is better"),
                   theme=th, height=400, legend=("no shaping", setting),
                   title=f"OOD detection per set: {setting} vs no shaping "
                         f"(FPR95 with {convention_label(convention)})")
    sets = list(metrics["ood_set"])
    for col, m in enumerate(("auroc", "fpr95"), start=1):
        shaped = 100 * metrics[m].to_numpy()
        base = shaped - 100 * metrics[f"{m}_delta"].to_numpy()
        fig.add_bar(x=sets, y=base, name="no shaping", marker_color=th.base,
                    legendgroup="base", showlegend=col == 1, **panel(col),
                    hovertemplate="%{x}: %{y:.2f}%<extra>no shaping</extra>")
        fig.add_bar(x=sets, y=shaped, name=setting, legendgroup="shaped", showlegend=col == 1,
                    marker_color=SHAPED_COLOR, **panel(col),
                    hovertemplate="%{x}: %{y:.2f}%<extra>" + setting + "</extra>")
    fig.update_layout(barmode="group")
    return fig


# --------------------------------------------------------------------------- distributions


def _clip_note(h: Histogram) -> str | None:
    """How many scores lie outside the plotted range (counted in the edge bins), or None."""
    below = sum(lo for lo, _ in h.outside.values())
    above = sum(hi for _, hi in h.outside.values())
    if not below and not above:
        return None
    total = sum(h.counts.values())
    parts = [f"{below:,} below {h.edges[0]:.3g}" if below else "",
             f"{above:,} above {h.edges[-1]:.3g}" if above else ""]
    return ("clipped into the edge bins:<br>" + ", ".join(p for p in parts if p)
            + f"<br>({below + above:,} of {total:,} scores)")


def distributions_figure(before: Histogram, after: Histogram, id_name: str,
                         thr_before: float, thr_after: float, colors: Mapping[str, str],
                         setting: str, score: str, *, theme: str | None = None) -> go.Figure:
    """ID vs each OOD set, density-normalised and overlaid: no shaping (left) vs shaped.

    ``before``/``after`` hold one density per set on shared edges (key ``id_name`` is ID).
    The dashed vertical line is the threshold that keeps 95% of ID samples (TPR 95%).
    Scores outside the plotted range are counted in the edge bins; each panel says how
    many under its axis.
    """
    th = theme_of(theme)
    names = [f"{n} (ID)" if n == id_name else n for n in before.densities]
    fig = subplots(1, 2, ("no shaping", setting), theme=th, height=440, legend=names,
                   title=f"{score} score distributions, ID vs each OOD set (dashed: the "
                         f"threshold keeping 95% of ID) - {setting}")
    shapes = []
    for i, (h, thr) in enumerate(((before, thr_before), (after, thr_after))):
        xr, yr = ref(i)
        for name, dens in h.densities.items():
            is_id = name == id_name
            fig.add_scatter(
                x=h.centers, y=dens, xaxis=xr, yaxis=yr, mode="lines", line_shape="hvh",
                name=f"{name} (ID)" if is_id else name, legendgroup=name, showlegend=i == 0,
                line=dict(color=ID_COLOR if is_id else colors.get(name, OOD_PALETTE[0]),
                          width=1.5 if is_id else 2),
                fill="tozeroy" if is_id else None, opacity=1.0,
                hovertemplate="score %{x:.3g}: density %{y:.3g}<extra>" + name + "</extra>")
        shapes.append(vline(i, thr, th.ink))
        note = _clip_note(h)
        axes(fig, i, x=dict(title_text=f"{score} score" + (f"<br><sup>{note}</sup>"
                                                            if note else "")),
             y=dict(title_text="density" if i == 0 else None))
    fig.update_layout(shapes=shapes)
    return fig


# --------------------------------------------------------------------------- curves


def _operating_point(curve: Curve, summary: Mapping[str, float] | None) -> tuple[float, float]:
    """(FPR, TPR) of the FPR95 operating point, in %: the metric's FPR95 when given, else
    the first plotted point whose TPR reaches 95% (a lookup on the thinned curve)."""
    if summary is not None:
        return 100 * float(summary["fpr95"]), 100 * TPR_POINT
    i = int(np.argmax(np.asarray(curve.y) >= TPR_POINT))
    return 100 * float(curve.x[i]), 100 * float(curve.y[i])


def _curve_title(name: str, kind: str, pair: tuple[Mapping, Mapping] | None) -> str:
    if pair is None:
        return name
    key, label = ("auroc", "AUROC") if kind == "roc" else ("aupr_in", "AUPR")
    if kind == "pr" and pair[1].get("convention", "id") == "ood":
        key = "aupr_out"
    return f"{name}<br>{label} {100 * pair[0][key]:.1f} → {100 * pair[1][key]:.1f}"


def curves_figure(curves: Mapping[str, tuple[Curve, Curve]], kind: str,
                  colors: Mapping[str, str], setting: str, convention: str,
                  ncols: int = 3, *, metrics: Mapping[str, tuple[Mapping, Mapping]] | None = None,
                  theme: str | None = None) -> go.Figure:
    """ROC (kind="roc") or PR (kind="pr") curves per OOD set: no shaping dashed, shaped solid.

    ``metrics`` maps each set to (unshaped, shaped) metrics (``OODMetrics`` or dicts with
    auroc, fpr95, aupr_in, aupr_out): each panel's title then gives the AUC no shaping ->
    shaped, and ROC panels mark the FPR95 operating points at exactly the reported FPR95.
    """
    th = theme_of(theme)
    names = list(curves)
    rows, cols = grid(len(names), ncols)
    pos = convention_label(convention)
    xl, yl = (("FPR (%)", "TPR (%)") if kind == "roc" else ("recall (%)", "precision (%)"))
    what = "ROC" if kind == "roc" else "Precision-recall"
    titles = [_curve_title(n, kind, (metrics or {}).get(n)) for n in names]
    legend = ["no shaping", f"{setting} (solid, set colour)"] + (
        ["FPR95 point (TPR 95%)"] if kind == "roc" else [])
    fig = subplots(rows, cols, titles, theme=th, hspace=0.07,
                   vspace=min(0.24, 0.8 / rows), height=60 + 300 * rows, legend=legend,
                   title=f"{what} curves per OOD set ({pos}): {setting} vs no shaping"
                         + (" (markers: FPR95 at TPR 95%)" if kind == "roc" else ""))
    for i, name in enumerate(names):
        xr, yr = ref(i)
        base, shaped = curves[name]
        color = colors.get(name, ID_COLOR)
        if kind == "roc":
            fig.add_scatter(x=[0, 100], y=[0, 100], mode="lines", showlegend=False,
                            line=dict(color=th.faint, width=1, dash="dot"), hoverinfo="skip",
                            xaxis=xr, yaxis=yr)
        fig.add_scatter(x=100 * base.x, y=100 * base.y, mode="lines", name="no shaping",
                        line=dict(color=th.base, dash="dash"), legendgroup="base",
                        showlegend=i == 0, xaxis=xr, yaxis=yr)
        fig.add_scatter(x=100 * shaped.x, y=100 * shaped.y, mode="lines", name=setting,
                        line=dict(color=color, width=2.5),
                        legendgroup="shaped", showlegend=False, xaxis=xr, yaxis=yr)
        if kind == "roc":
            pair = (metrics or {}).get(name, (None, None))
            pts = [_operating_point(c, m) for c, m in zip((base, shaped), pair, strict=True)]
            fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers",
                            name="FPR95 point", legendgroup="op", showlegend=False,
                            marker=dict(color=[th.base, color], size=9, symbol="circle",
                                        line=dict(color=th.ink, width=1.5)),
                            customdata=["no shaping", setting], xaxis=xr, yaxis=yr,
                            hovertemplate="%{customdata}: FPR95 %{x:.2f}%<extra>"
                                          + name + "</extra>")
        axes(fig, i, x=dict(title_text=xl, range=[0, 100]),
             y=dict(title_text=yl if i % cols == 0 else None, range=[0, 101]))
    _neutral_legend(fig, th, setting, kind == "roc")
    return fig


def _neutral_legend(fig: go.Figure, th, setting: str, points: bool) -> None:
    """Legend entries for series drawn in each set's colour: a swatch in the theme's ink,
    named so that it does not claim one set's colour for all of them."""
    fig.add_scatter(x=[None], y=[None], mode="lines", name=f"{setting} (solid, set colour)",
                    line=dict(color=th.ink, width=2.5), legendgroup="shaped")
    if points:
        fig.add_scatter(x=[None], y=[None], mode="markers", name="FPR95 point (TPR 95%)",
                        legendgroup="op", marker=dict(color=th.base, size=9,
                                                      line=dict(color=th.ink, width=1.5)))


# --------------------------------------------------------------------------- trade-off


def tradeoff_figure(df: pd.DataFrame, current_p: float | None, convention: str,
                    colors: Mapping[str, str] | None = None, *,
                    theme: str | None = None) -> go.Figure:
    """ID accuracy, average AUROC and average FPR95 against p, one line per method.

    Methods without p (``none``) are drawn as horizontal dotted lines; the current p
    is the vertical dashed line. Panel titles name the metric (no y-axis titles, so
    nothing lands on the neighbouring panel).
    """
    th = theme_of(theme)
    methods = list(dict.fromkeys(df["method"]))
    colors = colors or method_colors(methods)
    panels = (("id_acc", "ID accuracy (%)"), ("average/auroc", "avg AUROC (%)"),
              ("average/fpr95", "avg FPR95 (%)"))
    fig = subplots(1, 3, [t for _, t in panels], theme=th, height=400, legend=methods,
                   hspace=0.09,
                   title=f"Trade-off over p: accuracy and OOD detection vs pruning (FPR95 "
                         f"with {convention_label(convention)}; dashed: current p)")
    shapes = []
    for c, (col, _title) in enumerate(panels, start=1):
        for m in methods:
            d = df[df["method"] == m]
            if d["p"].isna().all():
                shapes.append(hline(c - 1, 100 * float(d[col].iloc[0]), colors[m],
                                    dash="dot"))
                fig.add_scatter(x=[None], y=[None], mode="lines", name=m,
                                line=dict(color=colors[m], dash="dot"), legendgroup=m,
                                showlegend=c == 1, **panel(c))
                continue
            fig.add_scatter(x=d["p"], y=100 * d[col], mode="lines+markers", name=m,
                            line=dict(color=colors[m]), marker=dict(size=4),
                            legendgroup=m, showlegend=c == 1, **panel(c),
                            hovertemplate="p=%{x}: %{y:.2f}%<extra>" + m + "</extra>")
        if current_p is not None:
            shapes.append(vline(c - 1, current_p, th.ink))
        axes(fig, c - 1, x=dict(title_text="p", range=[0, 100]))
    fig.update_layout(shapes=shapes)
    return fig


def pareto_figure(df: pd.DataFrame, front: pd.DataFrame, y: str, convention: str,
                  current: tuple[str, float, float] | None = None,
                  colors: Mapping[str, str] | None = None, *,
                  theme: str | None = None) -> go.Figure:
    """ID accuracy vs an OOD metric for every (method, p); the Pareto front as a line.

    ``current`` = (label, ID accuracy, metric value), fractions: the setting on screen,
    starred (it need not lie on the sweep's grid).
    """
    th = theme_of(theme)
    methods = list(dict.fromkeys(df["method"]))
    colors = colors or method_colors(methods)
    scatter = go.Scattergl if len(df) > WEBGL_POINTS else go.Scatter
    metric = y.split("/")[-1]
    legend = [*methods, "Pareto front"] + ([f"current: {current[0]}"] if current else [])
    fig = go.Figure(layout=base_layout(
        th, "Pareto view: ID accuracy vs OOD performance, all methods and p", 460, legend))
    for m in methods:
        d = df[df["method"] == m]
        fig.add_trace(scatter(
            x=100 * d["id_acc"], y=100 * d[y], mode="markers", name=m,
            marker=dict(color=colors[m], size=8, opacity=0.8),
            text=[f"{m} p={p:g}" if p == p else m for p in d["p"]],
            hovertemplate="%{text}<br>ID acc %{x:.2f}%<br>" + METRIC_LABELS[metric]
                          + " %{y:.2f}%<extra></extra>"))
    if not front.empty:
        # the front sits over hundreds of markers: a thick line and open rings, drawn last
        # of the data and in the markers' renderer (a WebGL canvas covers SVG traces)
        f = front.sort_values("id_acc")
        fig.add_trace(scatter(x=100 * f["id_acc"], y=100 * f[y], mode="lines+markers",
                              name="Pareto front", line=dict(color=th.ink, dash="dash",
                                                             width=3),
                              marker=dict(symbol="circle-open", size=12, color=th.ink,
                                          line=dict(width=2))))
    if current is not None and current[1] is not None:
        label, acc, value = current
        fig.add_trace(go.Scatter(x=[100 * acc], y=[100 * value], mode="markers",
                                 name=f"current: {label}", text=[label],
                                 hovertemplate="%{text}<br>ID acc %{x:.2f}%<br>"
                                               + METRIC_LABELS[metric] + " %{y:.2f}%"
                                               "<extra></extra>",
                                 marker=dict(symbol="star", size=18, color=th.highlight,
                                             line=dict(color=th.ink, width=1))))
    fig.update_layout(xaxis_title="ID accuracy (%)",
                      yaxis_title=f"avg {METRIC_LABELS[metric]} (%, "
                                  f"{convention_label(convention)})")
    return fig


# --------------------------------------------------------------------------- compare


def compare_figure(a: pd.DataFrame, b: pd.DataFrame, label_a: str, label_b: str,
                   convention: str, *, theme: str | None = None) -> go.Figure:
    """AUROC and FPR95 per OOD set (and Average) for two settings side by side, in %.

    The legend sits above the panels, so long setting labels never cover the x labels.
    """
    th = theme_of(theme)
    names = (plain_text(f"A: {label_a}"), plain_text(f"B: {label_b}"))
    fig = subplots(1, 2, ("AUROC (%)", "FPR95 (%)"), theme=th, height=400, legend=names,
                   title=f"A vs B per OOD set (FPR95 with {convention_label(convention)})")
    for col, m in enumerate(("auroc", "fpr95"), start=1):
        for df, label, color in ((a, names[0], ID_COLOR), (b, names[1], OOD_PALETTE[0])):
            fig.add_bar(x=df["ood_set"], y=100 * df[m], name=label, marker_color=color,
                        legendgroup=label, showlegend=col == 1, **panel(col),
                        hovertemplate="%{x}: %{y:.2f}%<extra>" + label + "</extra>")
    fig.update_layout(barmode="group")
    return fig

