"""dashboard.figures: pure functions from data to plotly figures (no Streamlit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from ash_core import Evaluator, list_methods, load_bundle
from ash_core import curves as ac
from ash_core.report import evaluation_frame
from ash_core.samples import inspect_sample
from ash_core.sweep import sweep
from dashboard import figures


@pytest.fixture(scope="module")
def ev(synthetic_bundle):
    return Evaluator(load_bundle(synthetic_bundle), warn=False)


@pytest.fixture(scope="module")
def results(ev):
    return ev.evaluate("ash-s", 80), ev.evaluate("none")


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
    assert "ID positive" in fig.layout.title.text


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
    assert "OOD positive" in fig.layout.title.text


def test_tradeoff_and_pareto(ev):
    df = sweep(ev.bundle, list_methods(), [0, 50, 90], evaluator=ev)
    fig = figures.tradeoff_figure(df, 50, "id")
    names = {t.name for t in fig.data}
    assert set(list_methods()) <= names
    assert any(s.x0 == 50 for s in fig.layout.shapes)
    front = ac.pareto_front(df, "id_acc", "average/auroc")
    pf = figures.pareto_figure(df, front, "average/auroc", "id",
                               current=("ash-s p=53", 0.8, 0.7))
    assert any(t.name == "Pareto front" for t in pf.data)
    star = next(t for t in pf.data if t.name == "current: ash-s p=53")
    assert (star.x[0], star.y[0]) == pytest.approx((80.0, 70.0))
    assert all(t.type == "scatter" for t in pf.data)
    big = pd.concat([df] * 100, ignore_index=True)
    assert any(t.type == "scattergl" for t in figures.pareto_figure(big, front, "average/auroc",
                                                                   "id").data)


def test_inspector_figures(ev):
    shaper = ev.shaper("ash-p", 75)
    base, shaped = ev.evaluate("none"), ev.evaluate("ash-p", 75)
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
    assert [t.name for t in fig.data[:2]] == ["A", "B"]
    np.testing.assert_allclose(fig.data[1].y, 100 * fb["auroc"])
