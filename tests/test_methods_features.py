"""Every score on features against its independent numpy reference (tests/reference_features.py)
on data with ties, duplicate and all-zero rows, constant units (a singular covariance), a
class absent from id_fit, two identical head rows, and a query at the id_fit mean."""

from __future__ import annotations

import numpy as np
import pytest
import reference_features as ref
import torch

from ash_core.errors import ParameterError
from ash_core.features import FitData, get_feature_score, list_feature_scores

C, D = 5, 8


def make_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    fit = np.maximum(rng.normal(0.5, 1.0, size=(60, D)), 0)
    fit[:, :3] = np.round(fit[:, :3] * 2) / 2        # ties
    fit[:, 5] = 0.75                                   # a constant unit: singular covariance
    fit[7] = fit[3]                                    # duplicate rows
    fit[9] = 0.0                                       # an all-zero row
    labels = rng.integers(0, C - 1, size=60)           # class C-1 never appears in id_fit
    weight = rng.normal(size=(C, D))
    weight[2] = weight[1]                              # two identical head rows
    bias = rng.normal(scale=0.1, size=C)
    x = np.maximum(rng.normal(0.4, 1.2, size=(25, D)), 0)
    x[0] = 0.0                                         # an all-zero query
    x[1] = fit.mean(0)                                 # a query at the id_fit mean
    x[2] = fit[3]                                      # a query equal to an id_fit row
    x[3, :4] = x[3, 4:]                                # duplicated units
    return fit, labels, weight, bias, x


def run(name: str, params: dict, data, labels=True):
    fit, lab, weight, bias, x = data
    spec = get_feature_score(name)
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    fd = FitData(t(fit), lab if labels else None, t(weight), t(bias))
    state = spec.fit(fd, params)
    xq = t(x)
    logits = torch.addmm(t(bias), xq, t(weight).T)
    return spec.score(xq, logits, (t(weight), t(bias)), state, params).numpy()


def f32(a):  # the library reads fp32 features and head, as a bundle holds them
    return np.asarray(a, dtype=np.float32).astype(np.float64)


CASES = {
    "knn": ({"k": 5}, lambda f, y, w, b, x: ref.knn(f, x, 5), 1e-5),
    "mahalanobis": ({}, lambda f, y, w, b, x: ref.mahalanobis(f, y, x), 1e-6),
    "rmds": ({}, lambda f, y, w, b, x: ref.rmds(f, y, x), 1e-6),
    "vim": ({"dim": 3}, lambda f, y, w, b, x: ref.vim(f, w, b, x, 3), 1e-6),
    "residual": ({"dim": 3}, lambda f, y, w, b, x: ref.residual(f, w, b, x, 3), 1e-6),
    "nci": ({"alpha": 0.01}, lambda f, y, w, b, x: ref.nci(f, w, b, x, 0.01), 1e-6),
    "fdbd": ({"distance": 1}, lambda f, y, w, b, x: ref.fdbd(f, w, b, x, True), 2e-5),
}


def test_every_feature_score_has_a_reference_case():
    assert set(CASES) == set(list_feature_scores())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference(name, seed):
    params, reference, tol = CASES[name]
    data = make_data(seed)
    fit, labels, weight, bias, x = data
    got = run(name, params, data)
    want = reference(f32(fit), labels, f32(weight), f32(bias), f32(x))
    assert got.shape == (len(x),) and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max()))


def test_fdbd_norm_of_the_feature():
    data = make_data(3)
    fit, labels, weight, bias, x = data
    got = run("fdbd", {"distance": 0}, data)
    want = ref.fdbd(f32(fit), f32(weight), f32(bias), f32(x), False)
    np.testing.assert_allclose(got, want, rtol=2e-5)


def test_knn_k_equal_to_the_bank_and_beyond():
    data = make_data(4)
    fit, labels, weight, bias, x = data
    got = run("knn", {"k": len(fit)}, data)
    np.testing.assert_allclose(got, ref.knn(f32(fit), f32(x), len(fit)), atol=1e-5)
    with pytest.raises(ParameterError, match="exceeds the 60 id_fit samples"):
        run("knn", {"k": len(fit) + 1}, data)


def test_vim_default_dim_is_the_official_rule():
    from ash_core.features.vim import auto_dim
    assert [auto_dim(d) for d in (64, 512, 767, 768, 2047, 2048, 4096)] == \
        [32, 256, 383, 512, 512, 1000, 1000]
    data = make_data(5)
    fit, labels, weight, bias, x = data
    np.testing.assert_allclose(run("vim", {"dim": 0}, data),
                               ref.vim(f32(fit), f32(weight), f32(bias), f32(x), D // 2),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["vim", "residual"])
def test_subspace_dim_must_leave_a_residual(name):
    with pytest.raises(ParameterError, match=r"dim=8 must be in \[1, 7\]"):
        run(name, {"dim": D}, make_data())


@pytest.mark.parametrize("name", ["mahalanobis", "rmds"])
def test_class_conditional_scores_need_labels(name):
    with pytest.raises(ParameterError, match="needs class labels on the id_fit split"):
        run(name, {}, make_data(), labels=False)


@pytest.mark.parametrize("name", sorted(CASES))
def test_nothing_is_mutated_and_it_is_deterministic(name):
    params = CASES[name][0]
    data = make_data(6)
    copies = [np.array(a, copy=True) for a in data]
    first = run(name, params, data)
    for a, b in zip(data, copies, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first, run(name, params, data))


@pytest.mark.parametrize("name", ["mahalanobis", "rmds", "vim", "residual", "knn"])
def test_fewer_id_fit_samples_than_units(name):
    """A rank-deficient covariance: the pseudo-inverse must drop its null directions."""
    params, reference, tol = CASES[name]
    fit, labels, weight, bias, x = make_data(7)
    data = (fit[:6] * 3.0 + 0.1, labels[:6], weight, bias, x)
    got = run(name, params, data)
    want = reference(f32(data[0]), data[1], f32(weight), f32(bias), f32(x))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max()))
