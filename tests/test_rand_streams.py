"""ASH-RAND draws one stream per (seed, split, row): a byte copy of the ID split draws
other values, the order the bundle lists its splits in changes nothing, and the exact
engine, the score cube and the inspector's one row draw the same values."""

from __future__ import annotations

import numpy as np
import pytest
from cube_helpers import assert_scores_close

from ash_core import Evaluator, Setting, create_bundle, load_bundle
from ash_core.cube import build, get_cube, point_result
from ash_core.samples import shape_sample

RAND = Setting("ash-rand", {"p": 65.0}, seed=4)


def arrays(seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], dict]:
    rng = np.random.default_rng(seed)
    x = np.abs(rng.normal(size=(400, 24))).astype(np.float32)
    head = (rng.normal(size=(5, 24)), rng.normal(scale=0.1, size=5))
    splits = {"test": ("id", x, rng.integers(0, 5, 400)),
              "copy": ("ood", x.copy()),
              "far": ("ood", np.abs(rng.normal(0.5, 2.0, size=(300, 24))).astype(np.float32))}
    return head, splits


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    head, splits = arrays()
    return load_bundle(create_bundle(tmp_path_factory.mktemp("rand") / "b", head, splits))


def test_a_byte_copy_of_the_id_split_draws_other_values(bundle):
    got = Evaluator(bundle).evaluate(RAND)
    ids, copy = got.id_scores, got.ood_scores["copy"]
    assert not np.isin(copy, ids).any()  # no row of the copy scores as its twin
    assert got.ood["copy"].auroc != 0.5
    assert "ties" not in got.to_dict()


def test_the_order_of_the_splits_changes_nothing(bundle, tmp_path):
    head, splits = arrays()
    other = create_bundle(tmp_path / "reordered", head,
                          {k: splits[k] for k in ("far", "copy", "test")})
    a = Evaluator(bundle).evaluate(RAND)
    b = Evaluator(load_bundle(other), ood=["copy", "far"]).evaluate(RAND)
    np.testing.assert_array_equal(a.id_scores, b.id_scores)
    for name in ("copy", "far"):
        np.testing.assert_array_equal(a.ood_scores[name], b.ood_scores[name])
        assert a.ood[name] == b.ood[name]


@pytest.mark.parametrize("backend", ["native", "torch"])
def test_the_cube_draws_what_the_exact_engine_draws(bundle, backend, monkeypatch):
    monkeypatch.setattr(build, "BLOCK_ROWS", 64)  # several blocks per split: rows 64.. too
    monkeypatch.setattr(build, "TORCH_CHUNK", 64)
    exact = Evaluator(bundle).evaluate(RAND)
    cube = point_result(get_cube(bundle, "ash-rand", [60.0, 65.0, 70.0], seed=4,
                                 use_cache=False, backend=backend), 65.0)
    assert_scores_close(cube.id_scores, exact.id_scores, "id")
    for name in ("copy", "far"):
        assert_scores_close(cube.ood_scores[name], exact.ood_scores[name], name)
        assert cube.ood[name].auroc == pytest.approx(exact.ood[name].auroc, abs=1e-4)


def test_the_inspectors_row_is_the_evaluated_row(bundle):
    ev = Evaluator(bundle)
    shaper = ev.shaper(RAND)
    for split in ("test", "copy", "far"):
        whole = ev.shaped_features(shaper, split)
        feats = ev.features(split)
        for i in (0, 5, feats.shape[0] - 1):
            np.testing.assert_array_equal(shape_sample(shaper, feats, i, split).numpy(),
                                          whole[i:i + 1].numpy())
