"""dashboard.figures: pure functions from data to plotly figures (no Streamlit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from test_leaderboard import brute_front

from ash_core import Evaluator, Setting, list_methods, load_bundle
from ash_core.maths import curves as ac
from ash_core.reports.tables import evaluation_frame
from ash_core.samples import inspect_sample
from ash_core.sweep import sweep
from dashboard import figure_style, figures, plotdata


def _text(title: str) -> str:
    return title.replace("<br>", " ")


@pytest.fixture(scope="module")
def ev(synthetic_bundle):
    return Evaluator(load_bundle(synthetic_bundle), warn=False)


@pytest.fixture(scope="module")
def results(ev):
    return ev.evaluate(Setting("ash-s", {"p": 80})), ev.evaluate(Setting("none"))


def test_set_colors_are_stable_and_distinct():
    c = figures.set_colors(["a", "b", "c"])
    assert len(set(c.values())) == 3
    assert figures.set_colors(["a", "b"])["b"] == c["b"]
    assert figures.ID_COLOR not in c.values()


def test_overview_figure_shows_percent_for_both_settings(results):
    r, b = results
    df = evaluation_frame(r.to_dict(), b.to_dict())
    base = evaluation_frame(b.to_dict())
    fig = figures.overview_figure(df, figures.set_colors(["far", "near"]), "ash-s p=80", "id")
    assert isinstance(fig, go.Figure)
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 4
    np.testing.assert_allclose(bars[1].y, 100 * df["auroc"])
    np.testing.assert_allclose(bars[0].y, 100 * base["auroc"])
    assert "ID positive" in _text(fig.layout.title.text)


def test_distributions_figure_marks_the_thresholds(results):
    r, b = results
    hb = ac.density_histograms({"id_test": b.id_scores, **b.ood_scores}, 30)
    ha = ac.density_histograms({"id_test": r.id_scores, **r.ood_scores}, 30)
    colors = figures.set_colors(list(r.ood_scores))
    fig = figures.distributions_figure(hb, ha, "id_test", 1.0, 2.0, colors, "ash-s p=80",
                                       "energy")
    assert len(fig.data) == 2 * (1 + len(r.ood_scores))
    vlines = [s for s in fig.layout.shapes if s.x0 == s.x1]
    assert sorted(s.x0 for s in vlines) == [1.0, 2.0]
    assert all(len(t.x) == 30 for t in fig.data)
    shaped_far = next(t for t in fig.data if t.name == "far" and t.xaxis == "x2")
    np.testing.assert_allclose(shaped_far.y, ha.densities["far"])
    assert shaped_far.line.color == colors["far"]
    assert next(t for t in fig.data if t.name == "id_test (ID)").fill == "tozeroy"


@pytest.mark.parametrize("kind", ["roc", "pr"])
def test_curves_figure_has_base_and_shaped_per_set(results, kind):
    r, b = results
    fn = ac.roc_curve if kind == "roc" else ac.pr_curve
    curves = {n: (fn(b.id_scores, b.ood_scores[n]), fn(r.id_scores, r.ood_scores[n]))
              for n in r.ood_scores}
    fig = figures.curves_figure(curves, kind, {}, "ash-s p=80", "ood")
    lines = [t for t in fig.data if t.name in ("no shaping", "ash-s p=80")]
    assert len(lines) == 2 * len(curves)
    assert max(max(t.x) for t in lines) == pytest.approx(100)
    assert "OOD positive" in _text(fig.layout.title.text)


def test_tradeoff_and_pareto(ev):
    df = sweep(ev.bundle, list_methods(), [0, 50, 90], evaluator=ev)
    fig = figures.tradeoff_figure(df, 50, "id")
    names = {t.name for t in fig.data}
    assert set(list_methods()) <= names
    assert any(s.x0 == 50 for s in fig.layout.shapes)
    front = plotdata.pareto(df, "average/auroc")
    pf = figures.pareto_figure(df, front, "average/auroc", "id",
                               current=("ash-s p=53", 0.8, 0.7))
    assert any(t.name == "Pareto front" for t in pf.data)
    star = next(t for t in pf.data if t.name == "current: ash-s p=53")
    assert (star.x[0], star.y[0]) == pytest.approx((80.0, 70.0))
    assert all(t.type == "scatter" for t in pf.data)
    big = pd.concat([df] * 100, ignore_index=True)
    assert any(t.type == "scattergl" for t in figures.pareto_figure(big, front, "average/auroc",
                                                                   "id").data)


def test_tradeoff_front_drops_dominated_points():
    df = pd.DataFrame({"id_acc": [0.9, 0.8, 0.85, 0.7, 0.9],
                       "average/auroc": [0.7, 0.9, 0.6, 0.95, 0.65],
                       "average/fpr95": [0.5, 0.3, 0.6, 0.2, 0.55]})
    assert list(plotdata.pareto(df, "average/auroc").index) == [3, 1, 0]
    assert list(plotdata.pareto(df, "average/fpr95").index) == [3, 1, 0]
    assert plotdata.pareto(df.iloc[:0], "average/auroc").empty


@pytest.mark.parametrize("y", ["average/auroc", "average/fpr95"])
def test_tradeoff_front_keeps_exact_duplicates_as_the_leaderboard(y):
    # regression: the Trade-off view's front (curves.pareto_front) dropped the second of
    # two identical points, which the Leaderboard's pareto_mask keeps (neither dominates)
    acc = [0.8, 0.8, 0.9, 0.9, 0.7, 0.6, float("nan"), 0.9]
    val = [0.7, 0.7, 0.5, 0.5, 0.9, 0.9, 0.95, 0.4]
    maximize = not y.endswith("fpr95")
    val = val if maximize else [1 - v for v in val]  # the same front, FPR95 minimised
    df = pd.DataFrame({"method": "m", "p": range(8), "id_acc": acc, y: val})
    front = plotdata.pareto(df, y)
    brute = brute_front(acc, val, True, maximize)
    assert sorted(front.index) == [i for i, on in enumerate(brute) if on]
    assert sorted(front.index) == [0, 1, 2, 3, 4]  # both duplicates of both pairs
    assert list(front["id_acc"]) == sorted(front["id_acc"])


def test_inspector_figures(ev):
    shaper = ev.shaper(Setting("ash-p", {"p": 75}))
    base, shaped = ev.evaluate(Setting("none")), ev.evaluate(Setting("ash-p", {"p": 75}))
    insp = inspect_sample(ev.features("far")[:1], shaper, ev.weight, ev.bias,
                          ev.bundle.classes, base.id_scores, shaped.id_scores)
    fig = figures.activations_figure(insp, "ash-p p=75")
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 2 and len(bars[0].y) == insp.before.size
    assert list(bars[1].marker.color).count(figures.KEPT_COLOR) == insp.n_kept
    assert any(s.y0 == pytest.approx(insp.threshold_value) for s in fig.layout.shapes)
    top = figures.topk_figure(insp, "ash-p p=75")
    assert len(top.data) == 2 and len(top.data[0].y) == 5
    img = figures.placeholder_image(64)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8


def test_compare_figure(results):
    r, b = results
    fa, fb = evaluation_frame(r.to_dict()), evaluation_frame(b.to_dict())
    fig = figures.compare_figure(fa, fb, "A", "B", "id")
    assert [t.name for t in fig.data[:2]] == ["A: A", "B: B"]
    np.testing.assert_allclose(fig.data[1].y, 100 * fb["auroc"])


# --------------------------------------------------------------------------- presentation


def _all_figures(ev, results, theme):
    """Every figure builder once, on the synthetic bundle, in ``theme``."""
    r, b = results
    df = evaluation_frame(r.to_dict(), b.to_dict())
    colors = figures.set_colors(list(r.ood_scores))
    hb = ac.density_histograms({"id_test": b.id_scores, **b.ood_scores}, 30)
    ha = ac.density_histograms({"id_test": r.id_scores, **r.ood_scores}, 30)
    curves = {n: (ac.roc_curve(b.id_scores, b.ood_scores[n]),
                  ac.roc_curve(r.id_scores, r.ood_scores[n])) for n in r.ood_scores}
    sw = sweep(ev.bundle, ["none", "ash-p", "ash-s"], [0, 50, 90], evaluator=ev)
    front = plotdata.pareto(sw, "average/auroc")
    insp = inspect_sample(ev.features("far")[:1], ev.shaper(Setting("ash-p", {"p": 75})), ev.weight, ev.bias,
                          ev.bundle.classes, b.id_scores, ev.evaluate(Setting("ash-p", {"p": 75})).id_scores)
    return {
        "overview": figures.overview_figure(df, colors, "ash-s p=80", "id", theme=theme),
        "distributions": figures.distributions_figure(hb, ha, "id_test", 1.0, 2.0, colors,
                                                      "ash-s p=80", "energy", theme=theme),
        "roc": figures.curves_figure(curves, "roc", colors, "ash-s p=80", "id", theme=theme),
        "tradeoff": figures.tradeoff_figure(sw, 50, "id", theme=theme),
        "pareto": figures.pareto_figure(sw, front, "average/auroc", "id",
                                        current=("ash-s p=53", 0.8, 0.7), theme=theme),
        "activations": figures.activations_figure(insp, "ash-p p=75", theme=theme),
        "topk": figures.topk_figure(insp, "ash-p p=75", theme=theme),
        "compare": figures.compare_figure(df, df, "a long setting label", "another", "id",
                                          theme=theme),
    }


def _ink_colours(fig: go.Figure) -> list[str]:
    """Colours of the non-data marks: reference lines (shapes), the Pareto front, outlines
    of markers, "no shaping" series and the ROC chance line."""
    out = [s.line.color for s in fig.layout.shapes if s.line.color]
    for t in fig.data:
        if t.name in ("Pareto front", "no shaping") or (t.hoverinfo == "skip"):
            out.append(t.line.color if t.type.startswith("scatter") else t.marker.color)
        marker_line = getattr(getattr(t, "marker", None), "line", None)
        if marker_line is not None and isinstance(marker_line.color, str):
            out.append(marker_line.color)
    return [c for c in out if c]


@pytest.mark.parametrize("theme", [None, "light", "dark"])
def test_marks_follow_the_theme(ev, results, theme):
    # regression: threshold and current-p lines were hard-coded black,
    # invisible on the dark theme
    th = figures.theme_of(theme)
    for name, fig in _all_figures(ev, results, theme).items():
        inks = _ink_colours(fig)
        assert inks or name == "compare", name  # compare has data colours only
        for color in inks:
            assert color.lower() not in ("black", "white", "#000000", "#ffffff"), (name, color)
            for bg in th.backgrounds:
                assert figure_style.contrast(color, bg) >= 2.5, (name, color, bg)
        if theme:
            assert fig.layout.template.layout.paper_bgcolor is not None, name
    dark = _all_figures(ev, results, "dark")["distributions"]
    assert dark.layout.template.layout.paper_bgcolor.lower() != "white"
    with pytest.raises(ValueError, match="unknown theme"):
        figures.theme_of("sepia")


def test_legends_and_titles_never_cover_the_panels(ev, results):
    # regression: the trade-off's FPR95 axis title sat on the AUROC panel and
    # Compare's legend (below the axes) covered the x labels
    for name, fig in _all_figures(ev, results, None).items():
        lay = fig.layout
        top_px = lay.margin.t
        if lay.showlegend is not False and any(t.showlegend is not False for t in fig.data):
            assert lay.legend.yref == "container" and lay.legend.yanchor == "top", name
            legend_px = (1 - lay.legend.y) * lay.height
            assert legend_px < top_px, (name, "legend must sit above the plot area")
        for line in lay.title.text.split("<br>"):
            assert len(line) <= figure_style.TITLE_CHARS, (name, line)
    trade = _all_figures(ev, results, None)["tradeoff"]
    assert trade.layout.yaxis2.title.text is None and trade.layout.yaxis3.title.text is None
    gap = trade.layout.xaxis2.domain[0] - trade.layout.xaxis.domain[1]
    assert gap >= 0.08


def test_overview_legend_swatches_are_the_bar_colours(results):
    # regression: the "shaped" swatch was orange while the shaped bars used
    # each set's colour
    r, b = results
    df = evaluation_frame(r.to_dict(), b.to_dict())
    fig = figures.overview_figure(df, figures.set_colors(["far", "near"]), "ash-s p=80", "id")
    for group in {t.legendgroup for t in fig.data}:
        bars = [t for t in fig.data if t.legendgroup == group]
        colours = {c for t in bars for c in np.atleast_1d(t.marker.color)}
        assert len(colours) == 1, (group, colours)
        assert any(t.showlegend is not False for t in bars), group


def test_curves_legend_does_not_claim_one_sets_colour(results):
    r, b = results
    curves = {n: (ac.roc_curve(b.id_scores, b.ood_scores[n]),
                  ac.roc_curve(r.id_scores, r.ood_scores[n])) for n in r.ood_scores}
    colors = figures.set_colors(list(curves))
    fig = figures.curves_figure(curves, "roc", colors, "ash-s p=80", "id")
    shown = [t for t in fig.data if t.showlegend is not False]
    for t in shown:
        assert t.line.color not in colors.values() and t.marker.color not in colors.values()


def test_histogram_says_how_many_scores_it_clips():
    # regression: outliers were piled into the edge bins without a note
    rng = np.random.default_rng(0)
    ind = np.concatenate([rng.normal(0, 1, 2000), [50.0] * 7])
    ood = np.concatenate([rng.normal(-2, 1, 2000), [-60.0] * 3])
    h = ac.density_histograms({"id": ind, "ood": ood}, 40, value_range=(-6.0, 6.0))
    assert h.outside["id"][1] >= 7 and h.outside["ood"][0] >= 3
    fig = figures.distributions_figure(h, h, "id", 0.0, 0.0, {}, "x", "energy")
    note = fig.layout.xaxis.title.text
    below, above = sum(v[0] for v in h.outside.values()), sum(v[1] for v in h.outside.values())
    assert "clipped into the edge bins" in note
    assert f"{below:,} below" in note and f"{above:,} above" in note
    assert f"of {sum(h.counts.values()):,} scores" in note
    clean = ac.density_histograms({"id": rng.normal(0, 1, 100)}, 10, value_range=(-9, 9))
    assert "clipped" not in figures.distributions_figure(
        clean, clean, "id", 0, 0, {}, "x", "energy").layout.xaxis.title.text


def test_roc_marks_the_fpr95_point_and_titles_give_the_auroc(results):
    r, b = results
    curves = {n: (ac.roc_curve(b.id_scores, b.ood_scores[n]),
                  ac.roc_curve(r.id_scores, r.ood_scores[n])) for n in r.ood_scores}
    mets = {n: (b.ood[n], r.ood[n]) for n in curves}
    fig = figures.curves_figure(curves, "roc", {}, "ash-s p=80", "id", metrics=mets)
    points = [t for t in fig.data if t.name == "FPR95 point" and t.x[0] is not None]
    assert len(points) == len(curves)
    for t, n in zip(points, curves, strict=True):
        assert list(t.x) == pytest.approx([100 * b.ood[n].fpr95, 100 * r.ood[n].fpr95])
        assert list(t.y) == pytest.approx([95.0, 95.0])
    titles = [a.text for a in fig.layout.annotations]
    for n in curves:
        assert f"{n}<br>AUROC {100 * b.ood[n].auroc:.1f} → {100 * r.ood[n].auroc:.1f}" in titles
    # without metrics: the first plotted point reaching TPR 95%
    plain = figures.curves_figure(curves, "roc", {}, "ash-s p=80", "id")
    first = next(t for t in plain.data if t.name == "FPR95 point")
    shaped = curves[next(iter(curves))][1]
    i = int(np.argmax(shaped.y >= 0.95))
    assert first.x[1] == pytest.approx(100 * shaped.x[i]) and first.y[1] >= 95


def test_bundle_supplied_names_show_as_plain_text_not_markup():
    # a class name like '<a href=...>' must not become a link in a plotly figure
    from dashboard.figure_style import plain_text

    assert plain_text('<a href="http://x">y</a> & z') == \
        '&lt;a href="http://x"&gt;y&lt;/a&gt; &amp; z'
    fa = pd.DataFrame({"ood_set": ["s"], "auroc": [0.5], "fpr95": [0.5]})
    fig = figures.compare_figure(fa, fa, '<a href="http://x">A</a>', "b", "id")
    assert all("<a " not in (t.name or "") for t in fig.data)
