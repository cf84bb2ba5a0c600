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
