"""KNN on binarised features (ASH-B): distances equal in exact arithmetic come out equal,
so the AUROC is the tie-respecting one (ties count 1/2) whatever the row order.

The reference is independent: survivor sets in numpy, their overlaps as an exact
product of 0/1 matrices, the k-th largest overlap as the score (minus the squared
distance 2 - 2m/k is monotone in it) and scikit-learn's ``roc_auc_score``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from test_methods_features import run

from ash_core import Setting, create_bundle, evaluate, load_bundle
from ash_core.features import knn as neighbours
from ash_core.maths.shaping import ash_b

REPO = Path(__file__).resolve().parents[1]
CIFAR = REPO / "cached_features" / "cifar10_resnet20"
P, K = 65, 50


def survivors(x: np.ndarray, p: float = P) -> np.ndarray:
    """0/1 survivor sets of local-threshold ASH (the k largest units, first ones on ties)."""
    x = np.asarray(x, dtype=np.float64)
    d = x.shape[1]
    kept = d - int(round(d * p / 100))
    top = np.argsort(-x, axis=1, kind="stable")[:, :kept]
    s = np.zeros(x.shape, dtype=np.float32)
    np.put_along_axis(s, top, 1.0, axis=1)
    s[x.sum(axis=1) == 0] = 0.0
    return s


def reference_scores(x: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """The k-th largest overlap with the bank (exact integers, as float64)."""
    overlaps = survivors(x) @ bank.T  # 0/1 products: exact in float32
    return -np.sort(-overlaps, axis=1)[:, K - 1].astype(np.float64)


@pytest.fixture(scope="module")
def cifar():
    if not CIFAR.is_dir():
        pytest.skip("the cifar10_resnet20 demo bundle is not in this checkout")
    return load_bundle(CIFAR)


@pytest.mark.slow  # every split of the demo bundle (~20 s on one core)
def test_ash_b_knn_equals_the_tie_respecting_reference(cifar):
    got = evaluate(cifar, Setting("ash-b", {"p": P, "k": K}, score="knn"))
    bank = survivors(cifar.split("cifar10_train").features)
    ids = reference_scores(cifar.split(cifar.id_split.name).features, bank)
    assert np.unique(ids).size < 20  # few distinct ID scores: ties decide the number
    for name, metrics in got.ood.items():
        ood = reference_scores(cifar.split(name).features, bank)
        y = np.r_[np.ones(ids.size), np.zeros(ood.size)]
        want = roc_auc_score(y, np.r_[ids, ood])
        assert metrics.auroc == pytest.approx(want, abs=1e-3), name
    assert got.ood["dtd"].auroc == pytest.approx(0.844, abs=1e-3)


def test_the_auroc_is_the_same_whatever_the_row_order(cifar, tmp_path):
    take = lambda name, n: np.asarray(cifar.split(name).features[:n], np.float32)  # noqa: E731
    fit, ids, ood = take("cifar10_train", 3000), take("cifar10_test", 3000), take("dtd", 1200)
    labels = np.asarray(cifar.split("cifar10_test").labels[:3000])
    head = (cifar.head_weight.numpy(), cifar.head_bias.numpy())
    rng = np.random.default_rng(3)
    aurocs = []
    for i in range(3):
        o_fit, o_id, o_ood = ((np.arange(n) if i == 0 else rng.permutation(n))
                              for n in (len(fit), len(ids), len(ood)))
        bundle = create_bundle(tmp_path / f"b{i}", head, {
            "test": ("id", ids[o_id], labels[o_id]), "train": ("id_fit", fit[o_fit]),
            "dtd": ("ood", ood[o_ood])})
        aurocs.append(evaluate(bundle, Setting("ash-b", {"p": P, "k": K}, score="knn"))
                      .ood["dtd"].auroc)
    assert aurocs[0] == aurocs[1] == aurocs[2]


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_equal_exact_distances_score_equal_bit_for_bit(backend, monkeypatch):
    """ASH-B rows of other survivor sets at other scales: two scores are equal exactly
    when their k-th largest overlaps with the bank are."""
    monkeypatch.setenv("ASH_KNN_BACKEND", backend)
    rng = np.random.default_rng(0)
    rows = lambda n: np.abs(rng.normal(size=(n, 64))).astype(np.float32)  # noqa: E731
    fit, x = (ash_b(torch.from_numpy(rows(n)), P).numpy() for n in (400, 600))
    got = run("knn", {"k": 5}, (fit, None, np.zeros((2, 64)), np.zeros(2), x), labels=False)
    overlaps = (x != 0).astype(np.int64) @ (fit != 0).astype(np.int64).T
    kth = -np.sort(-overlaps, axis=1)[:, 4]
    assert np.unique(kth).size > 2
    _, groups_got = np.unique(got, return_inverse=True)
    _, groups_ref = np.unique(kth, return_inverse=True)
    np.testing.assert_array_equal(groups_got, groups_ref)


def test_binarised_rows_of_several_counts_equal_the_exact_distances():
    """Global thresholds: survivor counts differ per row; the distance is
    [a != 0] + [b != 0] - 2 m / sqrt(k_a k_b), here from Python fractions."""
    rng = np.random.default_rng(1)
    signs = lambda n: (rng.random((n, 12)) < rng.uniform(0.1, 0.9, (n, 1)))  # noqa: E731
    fit = signs(70).astype(np.float32) * rng.uniform(0.5, 3, (70, 1)).astype(np.float32)
    fit[5] = 0.0
    x = signs(30).astype(np.float32) * rng.uniform(0.5, 3, (30, 1)).astype(np.float32)
    x[0] = 0.0
    got = run("knn", {"k": 7}, (fit, None, np.zeros((2, 12)), np.zeros(2), x), labels=False)
    s_fit, s_x = (fit != 0).astype(np.int64), (x != 0).astype(np.int64)
    for i in range(len(x)):
        ka, dists = s_x[i].sum(), []
        for j in range(len(fit)):
            kb, m = s_fit[j].sum(), int(s_x[i] @ s_fit[j])
            cos = m / np.sqrt(float(ka * kb)) if ka and kb else 0.0
            dists.append(float(ka > 0) + float(kb > 0) - 2 * cos)
        assert got[i] == pytest.approx(-sorted(dists)[6], abs=1e-12)
    assert neighbours.sign_pattern(torch.from_numpy(x)) is not None
