"""dashboard.figures_methods: Figure 1 and the methods overlay (pure figures, no Streamlit)."""

from __future__ import annotations

import numpy as np
import pytest
from test_figures import _ink_colours

from ash_core import Evaluator, Setting, list_methods, load_bundle
from ash_core.reports.leaderboard import curve_methods, figure1, leaderboard
from ash_core.reports.overlay import overlay
from ash_core.sweep import sweep
from dashboard import figure_style, figures_methods

EVIL = "<a href='x'>bad</a>"


@pytest.fixture(scope="module")
def ev(synthetic_bundle):
    return Evaluator(load_bundle(synthetic_bundle), warn=False)


@pytest.fixture(scope="module")
def parts(ev):
    board = leaderboard(ev, methods=["none", "ash-s", "ash-b", "scale", "gen"])
    return board, sweep(ev.bundle, curve_methods(list_methods()), [0.0, 40.0, 80.0],
                        evaluator=ev)


@pytest.fixture(scope="module")
def fig1(parts):
    return figure1(*parts, "auroc")


@pytest.fixture(scope="module")
def scores(ev):
    return overlay({"none": ev.evaluate(Setting("none")), EVIL: ev.evaluate(Setting("ash-s", {"p": 80}))})


def _figs(fig1, scores, theme):
    return {"figure1": figures_methods.figure1(fig1, "id", ("ash-s", 40.0), theme=theme),
            "hist": figures_methods.overlay_histograms(scores, {}, theme=theme),
            "roc": figures_methods.overlay_roc(scores, "id", theme=theme)}


def test_figure1_draws_curves_points_front_and_the_current_p(fig1):
    fig = figures_methods.figure1(fig1, "id", ("ash-s", 41.0))
    by = {t.name: t for t in fig.data}
    assert set(curve_methods(list_methods())) <= set(by)
    np.testing.assert_allclose(by["Pareto front"].y, 100 * fig1.front["value"])
    assert list(by["Pareto front"].text) == list(fig1.front["label"])
    assert sorted(by["other methods"].text) == sorted(fig1.points["method"])
    star = by["current: ash-s p=40"]  # the grid point nearest p
    row = fig1.curves[(fig1.curves["method"] == "ash-s") & (fig1.curves["p"] == 40)].iloc[0]
    assert star.x[0] == pytest.approx(100 * row["id_acc"])


def test_figure1_fpr95_is_minimised_and_labelled(parts):
    data = figure1(*parts, "fpr95")
    fig = figures_methods.figure1(data, "ood")
    assert "avg FPR95" in fig.layout.yaxis.title.text and "OOD positive" in \
        fig.layout.yaxis.title.text
    assert "lower is better" in fig.layout.title.text
    best = data.front.sort_values("id_acc").iloc[-1]  # the most accurate front member ...
    same = data.points[data.points["id_acc"] >= best["id_acc"]]
    assert (same["value"] >= best["value"]).all()  # ... has the lowest FPR95 among its peers


def test_overlay_has_one_panel_and_one_roc_per_method(scores):
    hist = figures_methods.overlay_histograms(scores, {"none": "energy"})
    assert len(hist.data) == 4 and hist.layout.xaxis.title.text == "energy"
    roc = figures_methods.overlay_roc(scores, "id")
    lines = [t for t in roc.data if t.hoverinfo != "skip"]
    assert len(lines) == 2
    assert lines[0].name.startswith("none (AUROC ")
    assert len({t.line.color for t in lines}) == 2  # distinct colours


@pytest.mark.parametrize("theme", [None, "light", "dark"])
def test_marks_follow_the_theme_and_names_stay_plain_text(fig1, scores, theme):
    th = figure_style.theme_of(theme)
    for name, fig in _figs(fig1, scores, theme).items():
        for color in _ink_colours(fig):
            for bg in th.backgrounds:
                assert figure_style.contrast(color, bg) >= 2.5, (name, color, bg)
        assert not [t for t in _strings(fig) if "<a href" in t], name
        if name != "figure1":
            assert any("&lt;a href" in t for t in _strings(fig)), name


def _strings(fig) -> list[str]:
    """Every label a figure shows: names, texts, hover templates, annotations, titles."""
    out = [a.text or "" for a in fig.layout.annotations] + [fig.layout.title.text or ""]
    for t in fig.data:
        out += [t.name or "", getattr(t, "hovertemplate", None) or ""]
        text = getattr(t, "text", None)
        out += list(text) if isinstance(text, tuple) else [text or ""]
    return [str(x) for x in out]


def test_figure1_labels_never_overlap():
    # regression: Figure 1's labels overprinted each other where methods sit close
    xs = [80.0, 80.05, 80.1, 80.1, 80.0, 80.05, 80.1, 80.0, 80.05, 85.0, 90.0]
    ys = [90.0, 90.02, 90.0, 90.05, 90.1, 90.1, 90.1, 90.05, 90.05, 70.0, 60.0]
    labels = ["temp-scaling", "energy", "maxlogit", "msp", "odin", "nci", "fdbd", "vim",
              "residual", "gen", "knn"]
    sides = figures_methods.place_labels(xs, ys, labels, (75, 95), (55, 95))
    assert sides[-2] and sides[-1]  # lone points are always named
    assert None in sides  # nine labels cannot fit around one spot: some go under the chart
    sx, sy = figures_methods.PLOT_PX[0] / 20, figures_methods.PLOT_PX[1] / 40
    boxes = [figures_methods._box(s, (x - 75) * sx, (y - 55) * sy, lab)
             for x, y, lab, s in zip(xs, ys, labels, sides, strict=True) if s]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not figures_methods._overlaps(a, b), (a, b)


def test_figure1_names_the_unlabelled_points_under_the_chart(fig1):
    fig = figures_methods.figure1(fig1, "id", ("ash-s", 41.0))
    pts = next(t for t in fig.data if t.name == "other methods")
    hidden = [t for t, tpl in zip(pts.text, pts.texttemplate, strict=True) if tpl == ""]
    notes = " ".join(a.text for a in fig.layout.annotations)
    for name in hidden:
        assert name in notes


def test_one_colour_per_method_in_every_figure(parts, fig1):
    # regression: a method had different colours in different views (by its position in
    # each figure's own list)
    from dashboard import figure_style, figures
    board, sw = parts
    every = figure_style.method_colors(list_methods())
    assert len(set(every.values())) == len(every)  # distinct for every registered method
    assert figure_style.method_colors(["scale"]) == {"scale": every["scale"]}

    def colour(fig, name):
        for t in fig.data:
            if t.name == name:
                return (t.line.color if t.mode and "lines" in t.mode else t.marker.color)
        raise AssertionError(name)
    last = list(dict.fromkeys(sw["method"]))[-2:]
    sub = sw[sw["method"].isin(last)]  # a subset: each method's position in it shifts
    front = sub.iloc[:0]
    for fig in (figures.tradeoff_figure(sub, None, "id"),
                figures.pareto_figure(sub, front, "average/auroc", "id"),
                figures_methods.figure1(fig1, "id")):
        for m in last:
            assert colour(fig, m) == every[m], (m, fig.layout.title.text)
    pts = next(t for t in figures_methods.figure1(fig1, "id").data
               if t.name == "other methods")
    assert list(pts.marker.color) == [every[m] for m in pts.text]


def test_the_pareto_front_is_drawn_over_the_points(parts):
    # regression: the front was a thin line lost under hundreds of markers
    from dashboard import figures, plotdata
    _, sw = parts
    front = plotdata.pareto(sw, "average/auroc")
    fig = figures.pareto_figure(sw, front, "average/auroc", "id")
    names = [t.name for t in fig.data]
    tr = fig.data[names.index("Pareto front")]
    assert names.index("Pareto front") == len(sw["method"].unique())  # after every method
    assert tr.line.width >= 3 and "markers" in tr.mode and tr.marker.symbol == "circle-open"
    assert list(tr.x) == sorted(tr.x)  # one line along the front, no zigzag
