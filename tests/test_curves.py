"""ash_core.maths.curves: thinned ROC/PR points, TPR-95 threshold, density histograms."""

from __future__ import annotations

import numpy as np
import pytest

from ash_core import ood_metrics
from ash_core.errors import FeatureError, ParameterError
from ash_core.maths.curves import (
    density_histograms,
    pr_curve,
    roc_curve,
    roc_pr_curves,
    thin_curve,
    tpr_threshold,
)


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(0)
    return rng.normal(1.0, 1.0, 20000), rng.normal(0.0, 1.0, 15000)


def test_roc_is_thinned_monotone_and_keeps_the_area(scores):
    ind, ood = scores
    c = roc_curve(ind, ood, max_points=300)
    assert c.n_full > 30000 and len(c) <= 300
    assert c.x[0] == 0 and c.y[0] == 0 and c.x[-1] == 1 and c.y[-1] == 1
    assert np.all(np.diff(c.x) >= 0) and np.all(np.diff(c.y) >= 0)
    auc = float(np.sum(np.diff(c.x) * (c.y[1:] + c.y[:-1]) / 2))
    assert auc == pytest.approx(ood_metrics(ind, ood).auroc, abs=2e-3)


def test_roc_ood_positive_mirrors_id_positive(scores):
    ind, ood = scores
    a = roc_curve(ind, ood, "id", max_points=10**6)
    b = roc_curve(ind, ood, "ood", max_points=10**6)
    auc_a = np.sum(np.diff(a.x) * (a.y[1:] + a.y[:-1]) / 2)
    auc_b = np.sum(np.diff(b.x) * (b.y[1:] + b.y[:-1]) / 2)
    assert auc_a == pytest.approx(auc_b, abs=1e-9)
    with pytest.raises(ParameterError):
        roc_curve(ind, ood, "both")


def test_pr_curve_area_matches_aupr(scores):
    ind, ood = scores
    m = ood_metrics(ind, ood)
    for pos, target in (("id", m.aupr_in), ("ood", m.aupr_out)):
        c = pr_curve(ind, ood, pos, max_points=10**6)
        ap = float(np.sum(np.diff(c.x) * c.y[1:]))
        assert ap == pytest.approx(target, abs=1e-9)
        thin = pr_curve(ind, ood, pos, max_points=200)
        assert len(thin) <= 200 and thin.x[-1] == 1.0


def test_tpr_threshold_is_the_fpr95_operating_point(scores):
    ind, ood = scores
    t = tpr_threshold(ind, 0.95)
    assert (ind >= t).mean() >= 0.95
    assert (ind > t).mean() < 0.95
    assert (ood >= t).mean() == pytest.approx(ood_metrics(ind, ood).fpr95, abs=1e-4)
    with pytest.raises(ParameterError):
        tpr_threshold(ind, 0)
    with pytest.raises(FeatureError):
        tpr_threshold([], 0.95)


def test_density_histograms_share_edges_and_integrate_to_one(scores):
    ind, ood = scores
    h = density_histograms({"id": ind, "ood": ood, "empty": np.array([])}, bins=50)
    assert h.edges.size == 51 and h.centers.size == 50
    for name in ("id", "ood"):
        assert float(np.sum(h.densities[name] * h.widths)) == pytest.approx(1.0)
    assert h.counts == {"id": ind.size, "ood": ood.size, "empty": 0}
    assert not h.densities["empty"].any()
    const = density_histograms({"a": np.ones(10)}, bins=4)
    assert float(np.sum(const.densities["a"] * const.widths)) == pytest.approx(1.0)
    with pytest.raises(ParameterError):
        density_histograms({"a": ind}, bins=0)


def test_thin_curve_keeps_short_curves_whole():
    x = np.linspace(0, 1, 50)
    assert thin_curve(x, x, 100).tolist() == list(range(50))
    big = np.linspace(0, 1, 100000)
    keep = thin_curve(big, big ** 2, 100)
    assert keep[0] == 0 and keep[-1] == big.size - 1 and keep.size <= 100


def test_roc_pr_curves_from_one_sort_equal_the_separate_ones(scores):
    ind, ood = scores
    for pos in ("id", "ood"):
        roc, pr = roc_pr_curves(ind, ood, pos, 300)
        r, p = roc_curve(ind, ood, pos, 300), pr_curve(ind, ood, pos, 300)
        np.testing.assert_array_equal(roc.x, r.x)
        np.testing.assert_array_equal(roc.y, r.y)
        np.testing.assert_array_equal(pr.x, p.x)
        np.testing.assert_array_equal(pr.y, p.y)
