"""What a score on features shares between values of its parameter gives bit for bit the
numbers of each value computed alone: KNN's per-split tables of the distances to the first
neighbours (``features.ScoreTable``; both backends, binarised rows too) and its one fitted
bank for every k; ViM's and Residual's one eigendecomposition for every dim
(``FitData.shared``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REPO, make_synthetic_bundle

from ash_core import Evaluator, Setting, load_bundle
from ash_core.features import knn
from ash_core.features import vim as vim_scores
from ash_core.features.base import FitData


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(make_synthetic_bundle(tmp_path_factory.mktemp("tables") / "b"))


def _scores(result) -> list[np.ndarray]:
    return [result.id_scores, *(result.ood_scores[n] for n in sorted(result.ood_scores))]


def _alone(bundle, setting, monkeypatch) -> list[np.ndarray]:
    """The scores with no table: every k scored on its own."""
    with monkeypatch.context() as m:
        m.setattr(knn, "TABLE_RANK", 0)
        return _scores(Evaluator(bundle, warn=False).evaluate(setting))


@pytest.mark.parametrize("backend", ["faiss", "torch"])
@pytest.mark.parametrize("method,params", [("knn", {}), ("ash-b", {"p": 80.0}),
                                           ("ash-s", {"p": 70.0})])
def test_every_k_read_from_the_table_equals_k_scored_alone(bundle, monkeypatch, backend,
                                                           method, params):
    if backend == "faiss" and knn.faiss_module() is None:
        pytest.skip("faiss-cpu is not installed; the torch backend is covered")
    monkeypatch.setenv("ASH_KNN_BACKEND", backend)
    ev = Evaluator(bundle, warn=False)
    for k in (7, 2, 1, 50, knn.TABLE_RANK, knn.TABLE_RANK + 1):
        setting = Setting(method, {**params, "k": k}, score="knn")
        got = _scores(ev.evaluate(setting))
        want = _alone(bundle, setting, monkeypatch)
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True)), (k, method)


def test_a_new_k_reads_the_table_without_a_new_search_or_fit(bundle, monkeypatch):
    ev = Evaluator(bundle, warn=False)
    ev.evaluate(Setting("knn", {"k": 10}))
    searched = []
    real = knn.nearest_distances
    monkeypatch.setattr(knn, "nearest_distances", lambda *a: searched.append(a[2]) or real(*a))
    for k in (11, 12, 200):
        ev.evaluate(Setting("knn", {"k": k}))
    assert searched == []
    ev.evaluate(Setting("knn", {"k": 201}))  # beyond the table: searched on its own
    assert searched and set(searched) == {201}
    states = [key for key in ev.store._derived._values if key[0] == "state"]
    assert len(states) == 1  # one fitted bank for every k


def test_k_beyond_the_bank_is_refused_with_or_without_a_table(bundle):
    ev = Evaluator(bundle, warn=False)
    ev.evaluate(Setting("knn", {"k": 5}))
    with pytest.raises(Exception, match="exceeds the 400 id_fit samples"):
        ev.evaluate(Setting("knn", {"k": 401}))


def test_a_table_serves_only_the_k_it_gives_bit_for_bit_on_the_widest_demo_bundle():
    """D = 1280 and 512 queries: where faiss's single-neighbour kernel rounds differently
    (k = 1), the table must not serve."""
    b = load_bundle(REPO / "cached_features" / "tinyimagenet_mobilenetv2")
    fit = torch.from_numpy(np.array(b.id_fit.features, dtype=np.float32))
    state = knn.fit_knn(FitData(fit, None, b.head_weight, b.head_bias), {"k": 1})
    x = torch.from_numpy(np.array(b.id_split.features[:512], dtype=np.float32))
    table = knn.nearest_distances(x, state, knn.TABLE_RANK)
    for k in (1, 2, 50, knn.TABLE_RANK):
        params = {"k": k}
        alone = knn.kth_score(knn.nearest_distances(x, state, k), params)
        served = knn.kth_score(table, params) if knn.table_rank(params, state) else alone
        assert torch.equal(served, alone), k


@pytest.mark.parametrize("score", ["vim", "residual"])
@pytest.mark.parametrize("method,params", [("none", {}), ("ash-s", {"p": 60.0})])
def test_every_dim_fitted_on_one_shared_subspace_equals_its_own_fit(bundle, monkeypatch,
                                                                     tmp_path, score,
                                                                     method, params):
    """ViM's and Residual's eigendecomposition, made once per shaping for every dim, give
    bit for bit the scores of a store that fits that dim alone (no disk cache either)."""
    monkeypatch.setenv("ASH_CUBE_CACHE", str(tmp_path / "shared"))
    ev = Evaluator(bundle, warn=False)
    made = []
    real = vim_scores._basis
    monkeypatch.setattr(vim_scores, "_basis", lambda data: made.append(1) or real(data))
    ev.evaluate(Setting("ash-b", {"p": 50.0, "dim": 5}, score=score))  # another shaping's
    for i, dim in enumerate((3, 17, 0, 31)):
        setting = Setting(method, {**params, "dim": dim}, score=score)
        got = _scores(ev.evaluate(setting))
        monkeypatch.setenv("ASH_CUBE_CACHE", str(tmp_path / f"alone{i}"))
        want = _scores(Evaluator(bundle, warn=False).evaluate(setting))
        monkeypatch.setenv("ASH_CUBE_CACHE", str(tmp_path / "shared"))
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True)), dim
    # once per shaping in the shared store, once per store fitted alone
    assert len(made) == 2 + 4
