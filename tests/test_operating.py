"""The operating point: counts at a threshold, the rates in both conventions, and the
threshold that keeps a share of ID (FPR95's at 95%)."""

from __future__ import annotations

import numpy as np
import pytest

from ash_core.errors import ParameterError
from ash_core.maths.metrics import ood_metrics
from ash_core.maths.operating import POOLED, operating_point, threshold_at_id_kept


def scores(seed: int = 0, decimals: int | None = 1):
    """Scores rounded to ``decimals`` (ties, also at the threshold) or continuous (None)."""
    rng = np.random.default_rng(seed)
    sets = [rng.normal(1, 1, 500), rng.normal(0.5, 1, 300), rng.normal(-1, 1, 200)]
    ids, near, far = (s if decimals is None else np.round(s, decimals) for s in sets)
    return ids, {"near": near, "far": far}


@pytest.mark.parametrize("threshold", [0.3, 1.0, -5.0, 9.0])
def test_counts_equal_a_direct_count(threshold):
    ids, oods = scores()
    op = operating_point(ids, oods, threshold, id_name="test")
    rows = {r["split"]: r for r in op.rows()}
    assert rows["test"]["kept"] == sum(1 for s in ids if s >= threshold)
    for name, s in oods.items():
        kept = sum(1 for v in s if v >= threshold)
        assert (rows[name]["kept"], rows[name]["flagged"], rows[name]["n"]) == \
            (kept, len(s) - kept, len(s))
    assert rows[POOLED]["kept"] == rows["near"]["kept"] + rows["far"]["kept"]
    assert rows[POOLED]["n"] == 500


def test_rates_in_both_conventions():
    ids, oods = scores(1)
    t = 0.5
    id_kept = int((ids >= t).sum())
    near_kept = int((oods["near"] >= t).sum())
    r = operating_point(ids, oods, t).rates("near")
    assert r == pytest.approx({"tpr": id_kept / 500, "fpr": near_kept / 300,
                               "precision": id_kept / (id_kept + near_kept)})
    r = operating_point(ids, oods, t, "ood").rates("near")
    assert r == pytest.approx({"tpr": (300 - near_kept) / 300, "fpr": (500 - id_kept) / 500,
                               "precision": (300 - near_kept) / (800 - near_kept - id_kept)})
    nothing = operating_point(ids, oods, 1e9).rates(POOLED)  # keeps nothing
    assert nothing["precision"] is None and nothing["tpr"] == 0.0


@pytest.mark.parametrize("decimals", [None, 1])
def test_95_percent_of_id_kept_is_the_fpr95_point(decimals):
    ids, oods = scores(2, decimals)
    t = threshold_at_id_kept(ids, 0.95)
    assert (ids >= t).mean() >= 0.95 and (ids > t).mean() < 0.95  # the largest such t
    op = operating_point(ids, oods, t)
    for name, s in oods.items():
        assert op.rates(name)["fpr"] == ood_metrics(ids, s).fpr95


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.1])
def test_bad_share_or_threshold_is_refused(bad):
    ids, oods = scores()
    with pytest.raises(ParameterError, match="share of ID kept"):
        threshold_at_id_kept(ids, bad)
    with pytest.raises(ParameterError, match="finite"):
        operating_point(ids, oods, float("nan"))
