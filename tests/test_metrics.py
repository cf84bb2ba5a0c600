"""OOD metrics against scikit-learn and the first-principles reference, both conventions."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ash_core import CONVENTIONS, METRIC_NAMES, OODMetrics, average_metrics, ood_metrics
from ash_core.errors import FeatureError, ParameterError
from ash_core.maths.metrics import IdScoreBlock, IdScores, batched_metric


def sklearn_metrics(id_scores, ood_scores, convention="id"):
    """The four metrics computed with scikit-learn (ID positive unless convention='ood')."""
    y_id = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    s = np.r_[id_scores, ood_scores].astype(np.float64)
    if convention == "id":
        fpr, tpr, _ = roc_curve(y_id, s, drop_intermediate=False)
    else:
        fpr, tpr, _ = roc_curve(1 - y_id, -s, drop_intermediate=False)
    return {
        "fpr95": float(fpr[np.argmax(tpr >= 0.95)]),
        "auroc": roc_auc_score(y_id, s),
        "aupr_in": average_precision_score(y_id, s),
        "aupr_out": average_precision_score(1 - y_id, -s),
    }


def tied_scores(seed: int, n_id: int, n_ood: int, levels: int = 12):
    """Scores on a coarse grid, so that many ID/OOD scores tie."""
    rng = np.random.default_rng(seed)
    ind = np.round(rng.normal(1.0, 1.0, n_id) * levels / 4) / (levels / 4)
    ood = np.round(rng.normal(0.0, 1.0, n_ood) * levels / 4) / (levels / 4)
    return ind, ood


def assert_metrics_close(got, expected, tol=1e-12):
    for name in METRIC_NAMES:
        assert got[name] == pytest.approx(expected[name], abs=tol), name


@pytest.mark.parametrize("convention", ["id", "ood"])
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("n_id", "n_ood"), [(40, 60), (100, 37), (21, 20), (200, 200)])
def test_matches_sklearn_and_reference_with_ties(seed, n_id, n_ood, convention):
    ind, ood = tied_scores(seed, n_id, n_ood)
    got = ood_metrics(ind, ood, convention)
    assert got.convention == convention
    assert_metrics_close(got, sklearn_metrics(ind, ood, convention))
    assert_metrics_close(got, ref.ood_metrics(ind, ood, convention))


@pytest.mark.parametrize("convention", ["id", "ood"])
def test_matches_sklearn_on_continuous_scores(convention):
    rng = np.random.default_rng(42)
    ind, ood = rng.normal(1, 1, 3000), rng.normal(0, 1.5, 2500)
    got = ood_metrics(torch.from_numpy(ind), torch.from_numpy(ood), convention)
    assert_metrics_close(got, sklearn_metrics(ind, ood, convention), tol=1e-10)


@settings(max_examples=60, deadline=None)
@given(
    ind=st.lists(st.integers(-4, 4), min_size=1, max_size=30),
    ood=st.lists(st.integers(-4, 4), min_size=1, max_size=30),
    convention=st.sampled_from(["id", "ood"]),
)
def test_property_matches_reference_and_sklearn(ind, ood, convention):
    ind, ood = np.array(ind, dtype=float), np.array(ood, dtype=float)
    got = ood_metrics(ind, ood, convention)
    assert_metrics_close(got, ref.ood_metrics(ind, ood, convention))
    assert_metrics_close(got, sklearn_metrics(ind, ood, convention))
    for name in METRIC_NAMES:
        assert 0.0 <= got[name] <= 1.0


def test_perfect_separation():
    ind, ood = np.linspace(5, 6, 50), np.linspace(0, 1, 80)
    for convention in CONVENTIONS:
        m = ood_metrics(ind, ood, convention)
        assert (m.fpr95, m.auroc, m.aupr_in, m.aupr_out) == (0.0, 1.0, 1.0, 1.0)
    worst = ood_metrics(ood, ind)  # reversed: every OOD sample scores higher than every ID one
    assert worst.auroc == 0.0 and worst.fpr95 == 1.0


def test_identical_distributions():
    same = np.arange(100, dtype=float)
    m = ood_metrics(same, same)
    assert m.auroc == 0.5
    assert m.aupr_in == pytest.approx(sklearn_metrics(same, same)["aupr_in"], abs=1e-12)
    constant = ood_metrics(np.zeros(30), np.zeros(70))
    # all scores tie: one threshold accepts everything
    assert (constant.auroc, constant.fpr95) == (0.5, 1.0)
    assert constant.aupr_in == pytest.approx(0.3) and constant.aupr_out == pytest.approx(0.7)


def test_conventions_differ_as_defined():
    # ID: 20 samples 1..20. OOD: 20 samples 0.5..19.5 shifted down.
    ind = np.arange(1, 21, dtype=float)
    ood = np.arange(1, 21, dtype=float) - 10.5
    # ID positive: keep 95% of ID (19 of 20) -> threshold at ID score 2: accepts OOD >= 2,
    # i.e. OOD scores 2.5..9.5 -> 8 of 20.
    assert ood_metrics(ind, ood, "id").fpr95 == pytest.approx(8 / 20)
    # OOD positive: catch 95% of OOD (19 of 20) -> reject scores <= 8.5: rejects ID 1..8 -> 8/20.
    assert ood_metrics(ind, ood, "ood").fpr95 == pytest.approx(8 / 20)
    # asymmetric case: ID spread wide, OOD concentrated
    ind2 = np.r_[np.full(19, 10.0), [0.0]]
    ood2 = np.r_[np.full(10, 1.0), np.full(10, 5.0)]
    assert ood_metrics(ind2, ood2, "id").fpr95 == 0.0     # threshold 10 keeps 95% of ID
    assert ood_metrics(ind2, ood2, "ood").fpr95 == 0.05   # rejecting <= 5 loses one ID sample
    a, b = ood_metrics(ind2, ood2, "id"), ood_metrics(ind2, ood2, "ood")
    assert (a.auroc, a.aupr_in, a.aupr_out) == (b.auroc, b.aupr_in, b.aupr_out)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_accepts_torch_scores_of_every_float_dtype(dtype):
    ind, ood = tied_scores(3, 50, 40)
    ti, to = torch.tensor(ind).to(dtype), torch.tensor(ood).to(dtype)
    got = ood_metrics(ti, to)
    expected = ood_metrics(ti.double().numpy(), to.double().numpy())
    assert got == expected


def test_result_is_a_labelled_mapping_of_fractions():
    m = ood_metrics([3.0, 2.0, 1.0], [0.0, 2.0], "ood")
    assert isinstance(m, OODMetrics)
    assert list(m) == list(METRIC_NAMES) == ["fpr95", "auroc", "aupr_in", "aupr_out"]
    assert len(m) == 4 and m["auroc"] == m.auroc
    assert m.convention == "ood"
    assert set(m.as_dict()) == set(METRIC_NAMES)
    assert all(isinstance(v, float) and 0 <= v <= 1 for v in m.as_dict().values())
    with pytest.raises(KeyError):
        m["convention"]


def test_bad_inputs():
    with pytest.raises(ParameterError, match="unknown FPR convention 'openood'"):
        ood_metrics([1.0], [0.0], "openood")
    with pytest.raises(FeatureError, match="ID scores are empty"):
        ood_metrics([], [0.0])
    with pytest.raises(FeatureError, match="OOD scores are empty"):
        ood_metrics([1.0], np.array([]))
    with pytest.raises(FeatureError, match="1 NaN/Inf"):
        ood_metrics([1.0, float("nan")], [0.0])
    with pytest.raises(FeatureError, match="NaN/Inf"):
        ood_metrics([1.0], [float("inf")])


def test_average_metrics_is_the_unweighted_mean():
    a = ood_metrics(*tied_scores(0, 50, 10))
    b = ood_metrics(*tied_scores(1, 50, 300))
    avg = average_metrics({"a": a, "b": b})
    for name in METRIC_NAMES:
        assert avg[name] == pytest.approx((a[name] + b[name]) / 2, abs=1e-15)
    with pytest.raises(ParameterError, match="no OOD sets"):
        average_metrics({})


# --------------------------------------------------------------------------- batched: [G, n] blocks


def tied_block(seed: int, rows: int, n: int, levels: int = 12, shift: float = 0.0,
               dtype=np.float64) -> np.ndarray:
    """``rows`` rows of scores on a coarse grid (many ties within and across rows)."""
    rng = np.random.default_rng(seed)
    block = np.round(rng.normal(shift, 1.0, (rows, n)) * levels / 4) / (levels / 4)
    return block.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("n_id", "n_ood"), [(40, 60), (100, 37), (21, 20), (1, 9), (9, 1)])
@pytest.mark.parametrize("convention", ["id", "ood"])
def test_batched_metrics_equal_the_per_point_ones_and_sklearn(n_id, n_ood, convention, dtype):
    ind = tied_block(1, 7, n_id, shift=0.8, dtype=dtype)
    ood = tied_block(2, 7, n_ood, dtype=dtype)
    block = IdScoreBlock(ind)
    auroc, fpr95 = block.auroc(ood), block.fpr95(ood, convention)
    assert auroc.shape == fpr95.shape == (7,)
    for g in range(7):
        per_point = IdScores(ind[g]).metrics(ood[g], convention)
        assert auroc[g] == per_point.auroc and fpr95[g] == per_point.fpr95  # bit for bit
        expected = sklearn_metrics(ind[g], ood[g], convention)
        assert auroc[g] == pytest.approx(expected["auroc"], abs=1e-12)
        assert fpr95[g] == expected["fpr95"]  # exact: the same count over the same total
    for name, values in (("auroc", auroc), ("fpr95", fpr95)):
        assert np.array_equal(batched_metric(ind, ood, name, convention), values)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 4).flatmap(lambda g: st.tuples(
        st.lists(st.lists(st.integers(-3, 3), min_size=5, max_size=5), min_size=g, max_size=g),
        st.lists(st.lists(st.integers(-3, 3), min_size=3, max_size=3), min_size=g, max_size=g))),
    convention=st.sampled_from(["id", "ood"]),
    tpr=st.sampled_from([0.95, 0.5, 0.8, 1.0]),
)
def test_property_batched_rows_match_sklearn(rows, convention, tpr):
    ind, ood = (np.array(r, dtype=np.float32) for r in rows)
    block = IdScoreBlock(ind, tpr)
    auroc, fpr = block.auroc(ood), block.fpr95(ood, convention)
    for g in range(len(ind)):
        assert auroc[g] == pytest.approx(roc_auc_score(
            np.r_[np.ones(5), np.zeros(3)], np.r_[ind[g], ood[g]]), abs=1e-12)
        y = np.r_[np.ones(5), np.zeros(3)] if convention == "id" else np.r_[np.zeros(5), np.ones(3)]
        s = np.r_[ind[g], ood[g]].astype(np.float64) * (1 if convention == "id" else -1)
        fprs, tprs, _ = roc_curve(y, s, drop_intermediate=False)
        assert fpr[g] == fprs[np.argmax(tprs >= tpr)]


@pytest.mark.parametrize("convention", ["id", "ood"])
def test_batched_fpr_takes_the_operating_point_by_counts_not_a_rounded_product(convention):
    # 0.28 * 25 = 7.000000000000001 in floats, yet 7 of 25 samples already reach TPR 0.28
    ind, ood = tied_block(5, 3, 25, shift=0.5), tied_block(6, 3, 25)
    got = IdScoreBlock(ind, tpr=0.28).fpr95(ood, convention)
    for g in range(3):
        assert got[g] == IdScores(ind[g], tpr=0.28).metrics(ood[g], convention).fpr95
        y = np.r_[np.ones(25), np.zeros(25)]
        s = np.r_[ind[g], ood[g]]
        fpr, tpr, _ = roc_curve(*((y, s) if convention == "id" else (1 - y, -s)),
                                drop_intermediate=False)
        assert got[g] == fpr[np.argmax(tpr >= 0.28)]


def test_batched_auroc_counts_ties_across_the_block_exactly():
    # row 0: every pair ties (0.5); row 1: ID wins 3 pairs, ties 1 of 4 (0.875)
    ind = np.array([[1.0, 1.0], [2.0, 1.0]])
    ood = np.array([[1.0, 1.0], [1.0, 0.0]])
    assert IdScoreBlock(ind).auroc(ood).tolist() == [0.5, 0.875]
    assert IdScoreBlock(ood).auroc(ind).tolist() == [0.5, 0.125]


def test_batched_scores_keep_float32_and_accept_torch():
    ind, ood = tied_block(3, 5, 50, shift=1.0), tied_block(4, 5, 30)
    as32 = IdScoreBlock(ind.astype(np.float32))
    assert as32.asc.dtype == np.float32
    want = IdScoreBlock(ind).auroc(ood)
    assert np.array_equal(as32.auroc(ood.astype(np.float32)), want)
    widened = IdScoreBlock(ind.astype(np.float32).astype(np.float64)).auroc(ood)
    assert np.array_equal(as32.auroc(ood), widened)  # mixed widths compare in float64
    assert np.array_equal(IdScoreBlock(torch.from_numpy(ind).half()).auroc(
        torch.from_numpy(ood).half()), IdScoreBlock(ind.astype(np.float16)).auroc(
        ood.astype(np.float16)))
    assert np.array_equal(IdScoreBlock(ind[0]).fpr95(ood[0]), IdScoreBlock(ind).fpr95(ood)[:1])


def test_batched_bad_inputs():
    block = IdScoreBlock(np.zeros((3, 4)))
    with pytest.raises(ParameterError, match="the OOD block has 2 grid points, the ID block 3"):
        block.auroc(np.zeros((2, 4)))
    with pytest.raises(ParameterError, match="no batched metric 'aupr_in'"):
        block.metric(np.zeros((3, 4)), "aupr_in")
    with pytest.raises(ParameterError, match="unknown FPR convention"):
        block.metric(np.zeros((3, 4)), "auroc", "openood")
    with pytest.raises(ParameterError, match=r"\[grid points, samples\], got shape \(2, 2, 2\)"):
        IdScoreBlock(np.zeros((2, 2, 2)))
    with pytest.raises(ParameterError, match="tpr must be in"):
        IdScoreBlock(np.zeros((1, 2)), tpr=0.0)
    with pytest.raises(FeatureError, match="ID scores are empty"):
        IdScoreBlock(np.zeros((2, 0)))
    for bad in (np.nan, np.inf, -np.inf):
        ood = np.zeros((3, 4))
        ood[1, 2] = bad
        for metric in ("auroc", "fpr95"):
            with pytest.raises(FeatureError, match="OOD scores contain 1 NaN/Inf"):
                block.metric(ood, metric)
        with pytest.raises(FeatureError, match="ID scores contain 1 NaN/Inf"):
            IdScoreBlock(ood)
