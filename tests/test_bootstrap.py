"""Bootstrap intervals: every replicate is the metrics of an explicit resample, the 95%
interval covers a known AUROC 95% of the time, a paired bootstrap cancels what two
methods share, and the draws depend on the seed and the split only."""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference as ref

from ash_core.errors import ParameterError
from ash_core.maths import bootstrap as bs
from ash_core.maths.metrics import METRIC_NAMES, ood_metrics


def normal_scores(seed: int, n: int, m: int, d: float = 1.0, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(d, 1.0, n), rng.normal(0.0, 1.0, m)
    return (a, b) if decimals is None else (np.round(a, decimals), np.round(b, decimals))


@pytest.mark.parametrize("convention", ["id", "ood"])
@pytest.mark.parametrize("decimals", [None, 1])  # 1: many ties, within and across sets
def test_every_replicate_is_the_metrics_of_its_resample(convention, decimals):
    # small: the reference counts every pair in Python
    ids, ood = normal_scores(1, 40, 30, decimals=decimals)
    ood2 = np.round(np.random.default_rng(2).normal(0.5, 1, 20), 1)
    sets = {"a": ood, "b": ood2}
    reps = bs.bootstrap_replicates(ids, sets, 8, seed=7, convention=convention)
    c_id, c_ood = bs.resample_counts(7, "id", 40, {"a": 30, "b": 20}, 8)
    assert (c_id.sum(axis=1) == 40).all() and (c_ood["b"].sum(axis=1) == 20).all()
    for name, scores in sets.items():
        for b in range(8):
            want = ref.ood_metrics(np.repeat(ids, c_id[b]), np.repeat(scores, c_ood[name][b]),
                                   convention)
            for m in METRIC_NAMES:
                assert reps[name][m][b] == pytest.approx(want[m], abs=1e-12), (name, b, m)


def test_blocks_and_row_drawing_do_not_change_the_draws(monkeypatch):
    ids, ood = normal_scores(3, 300, 200)
    whole = bs.bootstrap_replicates(ids, {"x": ood}, 40, seed=5)
    monkeypatch.setattr(bs, "BLOCK_CELLS", 1500)  # 3 replicates per block
    monkeypatch.setattr(bs, "ROW_AT_A_TIME", 250)  # the ID split one row at a time
    parts = bs.bootstrap_replicates(ids, {"x": ood}, 40, seed=5)
    for m in METRIC_NAMES:
        np.testing.assert_array_equal(whole["x"][m], parts["x"][m])


def test_interval_covers_a_known_auroc_95_percent_of_the_time():
    # ID ~ N(d, 1), OOD ~ N(0, 1): AUROC = Phi(d / sqrt 2). 200 seeded draws of n = m = 100
    # scores, B = 200 resamples each; the 95% interval must cover the truth in 92-98% of them.
    d, n, draws = 1.0, 100, 200
    truth = 0.5 * (1 + math.erf(d / math.sqrt(2) / math.sqrt(2)))
    hits = 0
    for s in range(draws):
        ids, ood = normal_scores(1000 + s, n, n, d)
        lo, hi = bs.bootstrap_ci(ids, {"x": ood}, 200, seed=s).ood["x"]["auroc"]
        hits += lo <= truth <= hi
    assert 0.92 <= hits / draws <= 0.98, hits / draws


def test_average_interval_is_of_the_per_replicate_average():
    ids, a = normal_scores(4, 200, 150)
    b = np.random.default_rng(5).normal(-1, 1, 90)
    ci = bs.bootstrap_ci(ids, {"a": a, "b": b}, 300, seed=2, groups={"near": ["a"],
                                                                       "gone": ["zz"]})
    reps = bs.bootstrap_replicates(ids, {"a": a, "b": b}, 300, seed=2)
    for m in METRIC_NAMES:
        want = bs.percentile_interval((reps["a"][m] + reps["b"][m]) / 2)
        assert ci.average[m] == pytest.approx(want, abs=1e-15)
        assert ci.groups["near"][m] == ci.ood["a"][m]
    assert "gone" not in ci.groups  # a group with no scored set has no interval
    assert (ci.n_id, ci.n_ood) == (200, {"a": 150, "b": 90})
    point = ood_metrics(ids, a)
    for m in METRIC_NAMES:  # the interval surrounds the point estimate here
        assert ci.ood["a"][m][0] <= point[m] <= ci.ood["a"][m][1]


def test_a_sets_interval_does_not_depend_on_the_other_sets():
    ids, a = normal_scores(6, 150, 100)
    alone = bs.bootstrap_ci(ids, {"a": a}, 100, seed=1).ood["a"]
    beside = bs.bootstrap_ci(ids, {"z": a[:40], "a": a}, 100, seed=1).ood["a"]
    other_seed = bs.bootstrap_ci(ids, {"a": a}, 100, seed=2).ood["a"]
    assert alone == beside
    assert alone != other_seed
    # each set draws its own resamples: two sets of one size are not resampled alike
    _, counts = bs.resample_counts(1, "id", 150, {"a": 100, "b": 100}, 5)
    assert not np.array_equal(counts["a"], counts["b"])


def test_paired_bootstrap_of_a_method_against_itself_is_zero_width():
    ids, ood = normal_scores(7, 200, 150)
    pair = bs.paired_bootstrap(ids, {"x": ood}, ids.copy(), {"x": ood.copy()}, 200)
    for m in METRIC_NAMES:
        assert pair.ood_ci["x"][m] == (0.0, 0.0)
        assert pair.average_ci[m] == (0.0, 0.0) and pair.average[m] == 0.0
        assert pair.verdict(m) == "no clear difference"


def test_paired_bootstrap_says_which_method_is_better():
    rng = np.random.default_rng(8)
    ids, ood = normal_scores(8, 400, 400, d=1.5)
    # B: the same samples, scores blurred by noise (a worse detector of the same images)
    b_ids, b_ood = ids + rng.normal(0, 1.0, 400), ood + rng.normal(0, 1.0, 400)
    pair = bs.paired_bootstrap(ids, {"x": ood}, b_ids, {"x": b_ood}, 300, seed=3)
    assert pair.average["auroc"] == pytest.approx(
        ood_metrics(ids, ood).auroc - ood_metrics(b_ids, b_ood).auroc)
    lo, hi = pair.average_ci["auroc"]
    assert 0 < lo <= pair.average["auroc"] <= hi
    assert pair.verdict("auroc") == "A better" and pair.verdict("fpr95") == "A better"
    flipped = bs.paired_bootstrap(b_ids, {"x": b_ood}, ids, {"x": ood}, 300, seed=3)
    assert flipped.verdict("auroc", "x") == "B better"
    # the paired interval is narrower than the two unpaired ones side by side
    ua = bs.bootstrap_ci(ids, {"x": ood}, 300, seed=3).average["auroc"]
    ub = bs.bootstrap_ci(b_ids, {"x": b_ood}, 300, seed=3).average["auroc"]
    assert hi - lo < (ua[1] - ua[0]) + (ub[1] - ub[0])


def test_paired_bootstrap_needs_the_same_samples():
    ids, ood = normal_scores(9, 50, 40)
    with pytest.raises(ParameterError, match="same samples"):
        bs.paired_bootstrap(ids, {"x": ood}, ids[:49], {"x": ood}, 10)


def test_seed_spread():
    runs = [{"fpr95": f, "auroc": 0.9, "aupr_in": 0.8, "aupr_out": 0.7} for f in (0.1, 0.3)]
    out = bs.seed_spread(runs)
    assert out["fpr95"] == pytest.approx({"mean": 0.2, "std": np.std([0.1, 0.3], ddof=1),
                                          "min": 0.1, "max": 0.3})
    assert out["auroc"]["std"] == 0.0
    assert bs.seed_spread(runs[:1])["fpr95"]["std"] == 0.0
    with pytest.raises(ParameterError):
        bs.seed_spread([])


@pytest.mark.parametrize("kwargs, match", [({"resamples": 0}, "resamples"),
                                           ({"resamples": 2.5}, "resamples"),
                                           ({"level": 1.0}, "level")])
def test_bad_arguments_are_refused(kwargs, match):
    ids, ood = normal_scores(10, 20, 20)
    with pytest.raises(ParameterError, match=match):
        bs.bootstrap_ci(ids, {"x": ood}, **kwargs)
    with pytest.raises(ParameterError, match="no OOD sets"):
        bs.bootstrap_ci(ids, {})


def test_wide_counts_give_the_same_replicates_as_compact_ones():
    # counts come as uint8 unless one exceeds 255; the int64 path must agree
    ids, ood = normal_scores(11, 300, 200, decimals=1)
    c_id, c_ood = bs.resample_counts(2, "id", 300, {"x": 200}, 6)
    assert c_id.dtype == np.uint8
    scored = bs._Scored(ids, {"x": ood}, 0.95)
    narrow = scored.replicate(c_id, c_ood, "id")["x"]
    wide = scored.replicate(c_id.astype(np.int64), {"x": c_ood["x"].astype(np.int64)},
                            "id")["x"]
    for m in METRIC_NAMES:
        np.testing.assert_array_equal(narrow[m], wide[m])
