"""What a score on features shares between values of its parameter gives bit for bit the
numbers of each value computed alone: KNN's per-split tables of the distances to the first
neighbours (``features.ScoreTable``; both backends, binarised rows too, k = 1 and both
tiers) and its one fitted bank for every k; ViM's and Residual's one fit and per-split
table of running squared projections for every dim; a table over the memory budget is
not made (the split is scored alone, the same numbers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REPO, make_synthetic_bundle

from ash_core import Evaluator, Setting, load_bundle
from ash_core.engine.memo import Recent
from ash_core.features import base as features_base
from ash_core.features import get_feature_score, knn
from ash_core.features import vim as vim_scores
from ash_core.features.base import FitData

TINY = REPO / "cached_features" / "tinyimagenet_mobilenetv2"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(make_synthetic_bundle(tmp_path_factory.mktemp("tables") / "b"))


def _scores(result) -> list[np.ndarray]:
    return [result.id_scores, *(result.ood_scores[n] for n in sorted(result.ood_scores))]


def _alone(bundle, setting, monkeypatch) -> list[np.ndarray]:
    """The scores with no table: every value scored on its own."""
    with monkeypatch.context() as m:
        m.setattr(features_base, "TABLE_MAX_BYTES", 0)
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
    for k in (7, 2, 1, 50, 200, 201, 400):  # 400 id_fit rows: the second tier is 400
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
    ev.evaluate(Setting("knn", {"k": 201}))  # beyond the first tier: the second's table
    assert searched and set(searched) == {400}  # (capped at the 400 id_fit rows)
    searched.clear()
    for k in (300, 400, 1, 150):
        ev.evaluate(Setting("knn", {"k": k}))
    assert searched == []
    states = [key for key in ev.store._derived._values if key[0] == "state"]
    assert len(states) == 1  # one fitted bank for every k


def test_k_beyond_the_bank_is_refused_with_or_without_a_table(bundle):
    ev = Evaluator(bundle, warn=False)
    ev.evaluate(Setting("knn", {"k": 5}))
    with pytest.raises(Exception, match="exceeds the 400 id_fit samples"):
        ev.evaluate(Setting("knn", {"k": 401}))


def _real(name: str, rows: int):
    b = load_bundle(REPO / "cached_features" / name)
    fit = torch.from_numpy(np.array(b.id_fit.features, dtype=np.float32))
    data = FitData(fit, None, b.head_weight, b.head_bias)
    x = torch.from_numpy(np.array(b.id_split.features[:rows], dtype=np.float32))
    return b, data, x


@pytest.mark.parametrize("backend", ["faiss", "torch"])
@pytest.mark.parametrize("name", ["tinyimagenet_mobilenetv2", "cifar10_resnet20"])
def test_every_k_a_table_serves_is_the_k_scored_alone_on_real_features(monkeypatch, backend,
                                                                      name):
    """Real features (D = 1280 / 64, 4,000 / 9,000 id_fit rows): k = 1 (which faiss
    computes with another kernel alone), both tiers' edges and the second tier's top."""
    if backend == "faiss" and knn.faiss_module() is None:
        pytest.skip("faiss-cpu is not installed; the torch backend is covered")
    monkeypatch.setenv("ASH_KNN_BACKEND", backend)
    b, data, x = _real(name, 512)
    state = knn.fit_knn(data, {"k": 1})
    spec, tables = get_feature_score("knn"), {}
    for k in (1, 2, 200, 201, 500, 1000):
        params = {"k": k}
        rank = spec.table.key(params, state)
        assert rank == (200 if k <= 200 else 1000), k
        if rank not in tables:
            tables[rank] = spec.table.make(x, None, None, state, rank)
        served = spec.table.read(tables[rank], params)
        assert torch.equal(served, spec.score(x, None, None, state, params)), k
    assert spec.table.key({"k": 1001}, state) is None  # beyond the tiers: scored alone


@pytest.mark.parametrize("score", ["vim", "residual"])
def test_every_dim_read_from_one_table_is_the_dim_scored_alone_on_real_features(score):
    """D = 1280, 6,500 rows (two row chunks): dim 1, D - 1, 0 (the official 512) and
    others, each read from one table equals the direct score bit for bit, one fit."""
    b, data, _ = _real("tinyimagenet_mobilenetv2", 0)
    x = torch.cat([torch.from_numpy(np.array(b.id_split.features, dtype=np.float32)),
                   data.features])
    logits = torch.addmm(data.bias, x, data.weight.T)
    spec = get_feature_score(score)
    head = (data.weight, data.bias)
    state = spec.fit(data, {"dim": 0})
    keys = {spec.table.key({"dim": d}, state) for d in (1, 1279, 0, 7, 640)}
    assert len(keys) == 1  # one table for every dim
    table = spec.table.make(x, logits, head, state, keys.pop())
    got = {}
    for dim in (1, 1279, 0, 7, 640):
        params = {"dim": dim}
        got[dim] = spec.table.read(table, params)
        assert torch.equal(got[dim], spec.score(x, logits, head, state, params)), dim
    assert torch.equal(got[0], spec.table.read(table, {"dim": vim_scores.auto_dim(1280)}))
    assert not torch.equal(got[1], got[1279])
    with pytest.raises(Exception, match="must be in"):
        spec.table.key({"dim": 1280}, state)


def test_a_split_whose_table_is_over_the_budget_is_scored_alone(bundle, monkeypatch):
    """The budget between the small OOD splits' tables and the 400-row ID split's: only
    the small ones are made, and every split's numbers are those without any table."""
    setting = Setting("knn", {"k": 3})
    want = _alone(bundle, setting, monkeypatch)
    ev = Evaluator(bundle, warn=False)
    sizes = {n: len(bundle.split(n)) for n in ev.split_names}
    assert max(sizes.values()) > min(sizes.values())
    monkeypatch.setattr(features_base, "TABLE_MAX_BYTES", min(sizes.values()) * 200 * 8)
    got = _scores(ev.evaluate(setting))
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    made = {key[1] for key in ev.store._tables._values}
    assert made == {n for n, rows in sizes.items() if rows == min(sizes.values())}


def test_the_tables_kept_stay_within_their_byte_budget():
    recent = Recent(10, max_bytes=100, nbytes=len)
    for i in range(5):
        recent.get(i, lambda: b"x" * 40)
    assert list(recent._values) == [3, 4]  # 80 bytes; a third would be 120
    recent.get(9, lambda: b"x" * 500)  # the newest is kept, even alone over the budget
    assert list(recent._values) == [9]


@pytest.mark.parametrize("score", ["vim", "residual"])
@pytest.mark.parametrize("method,params", [("none", {}), ("ash-s", {"p": 60.0})])
def test_every_dim_fitted_on_one_shared_subspace_equals_its_own_fit(bundle, monkeypatch,
                                                                     tmp_path, score,
                                                                     method, params):
    """ViM's and Residual's fit and eigendecomposition, made once per shaping for every
    dim, give bit for bit the scores of a store that fits and scores that dim alone (no
    disk cache, no table)."""
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
        want = _alone(bundle, setting, monkeypatch)
        monkeypatch.setenv("ASH_CUBE_CACHE", str(tmp_path / "shared"))
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True)), dim
    # once per shaping in the shared store, once per store fitted alone
    assert len(made) == 2 + 4
    states = [key for key in ev.store._derived._values if key[0] == "state"]
    assert len(states) == 2  # one fitted state per shaping, whatever the dim
