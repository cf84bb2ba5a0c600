"""The score cube against per-p evaluation, for every ASH method, both threshold modes,
both engines, with ties and all-zero rows; plus its cache (reuse, stale, corrupt)."""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ash_core import SplitData, write_bundle
from ash_core.bundle import load_bundle
from ash_core.engine import cube as cube_mod
from ash_core.engine import kernel_status
from ash_core.engine.cube import (
    CUBE_METHODS,
    build_cubes,
    cube_key,
    cube_path,
    get_cube,
    get_cubes,
    load_cube,
    point_metrics,
)
from ash_core.errors import ParameterError
from ash_core.evaluate import Evaluator
from ash_core.registry import list_methods
from ash_core.scores import energy_score, maxlogit_score, msp_score
from ash_core.shaping import percentile_of

ENGINES = ["native", "torch"]
GRID = [0.0, 7.5, 20.0, 33.0, 50.0, 64.0, 65.0, 80.0, 90.0, 97.0, 99.0]


def make_tricky_bundle(path: Path, dim: int = 40, classes: int = 7, n: int = 90,
                       seed: int = 1) -> Path:
    """Quantised post-ReLU features (many exact ties), all-zero rows, duplicate rows."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(classes, dim)).astype(np.float32)
    bias = rng.normal(scale=0.1, size=classes).astype(np.float32)

    def feats(m: int, shift: float) -> np.ndarray:
        x = np.round(np.maximum(rng.normal(shift, 1.0, size=(m, dim)), 0.0) * 4) / 4
        x[:3] = 0.0                      # all-zero rows
        x[3] = x[4]                      # duplicate rows: identical scores
        x[5] = 1.0                       # one constant row: every unit tied
        return x.astype(np.float32)

    id_x = feats(n, 0.5)
    labels = rng.integers(0, classes, n)
    splits = [
        SplitData("id_test", "id", id_x, labels),
        SplitData("id_train", "id_fit", feats(n, 0.5), rng.integers(0, classes, n)),
        SplitData("far", "ood", feats(n - 20, 0.0)),
        SplitData("near", "ood", feats(n - 30, 0.3)),
    ]
    return write_bundle(path, weight, bias, [f"c{i}" for i in range(classes)], splits)


@pytest.fixture(scope="module")
def tricky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tricky_bundle(tmp_path_factory.mktemp("cube") / "tricky")


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """More classes than one 64-wide tile (with padding) and a larger D."""
    return make_tricky_bundle(tmp_path_factory.mktemp("cube") / "wide", dim=150, classes=70,
                              n=60, seed=2)


def reference(ev: Evaluator, method: str, p: float, threshold: str, seed: int, split: str):
    shaper = ev.shaper(method, p, threshold, seed)
    return ev.shaped_logits(shaper, split)


def assert_matches(cube, ev: Evaluator, method: str, threshold: str, seed: int) -> int:
    """Cube == per-p evaluation: energies rtol 1e-4 (atol at the fp32 logit scale), MSP and
    max-logit likewise, predictions equal except where the top two logits (nearly) tie."""
    checked = 0
    for p in cube.grid:
        for split in ev.split_names:
            logits = reference(ev, method, p, threshold, seed, split)
            scale = logits.abs().amax(dim=1).clamp_min(1.0).numpy()
            atol = 2e-6 * scale
            for name, fn in (("energy", energy_score), ("maxlogit", maxlogit_score)):
                ref = fn(logits).numpy()
                got = cube.scores(split, p, name)
                bad = np.abs(got - ref) > 1e-4 * np.abs(ref) + atol
                assert not bad.any(), (method, threshold, p, split, name, got[bad], ref[bad])
            ref_msp = msp_score(logits).numpy()
            got_msp = cube.scores(split, p, "msp")
            assert np.all(np.abs(got_msp - ref_msp) <= 1e-4 * ref_msp + 4 * atol * ref_msp)
            pred = cube.preds(split, p)
            ref_pred = logits.argmax(dim=1).numpy()
            top2 = torch.topk(logits, 2, dim=1).values
            near_tie = ((top2[:, 0] - top2[:, 1]).numpy() <= 4 * atol)
            assert np.all((pred == ref_pred) | near_tie), (method, threshold, p, split)
            checked += 1
    return checked


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("threshold", ["local", "global"])
def test_cube_equals_per_p_evaluation(tricky: Path, threshold: str, engine: str) -> None:
    ev = Evaluator(load_bundle(tricky), warn=False)
    cubes = build_cubes(ev, list(CUBE_METHODS), GRID, threshold, seed=5, engine=engine)
    assert set(cubes) == set(CUBE_METHODS)
    for method, cube in cubes.items():
        assert cube.engine == engine
        assert cube.grid.tolist() == sorted(GRID)
        assert assert_matches(cube, ev, method, threshold, 5) == len(GRID) * 3


@pytest.mark.parametrize("engine", ENGINES)
def test_cube_wide_head_with_padding(wide: Path, engine: str) -> None:
    ev = Evaluator(load_bundle(wide), warn=False)
    grid = [0.0, 12.0, 50.0, 77.0, 99.0]
    for threshold in ("local", "global"):
        cubes = build_cubes(ev, ["ash-s", "ash-b"], grid, threshold, engine=engine)
        for method, cube in cubes.items():
            assert assert_matches(cube, ev, method, threshold, 0) == len(grid) * 3


def test_all_zero_rows_give_the_bias_scores(tricky: Path) -> None:
    ev = Evaluator(load_bundle(tricky), warn=False)
    cubes = build_cubes(ev, ["ash-p", "ash-s", "ash-b"], GRID, "local")
    bias_energy = float(energy_score(ev.bias[None, :])[0])
    for cube in cubes.values():
        energies = cube.splits["id_test"].energy[:, :3]
        assert np.isfinite(energies).all()
        np.testing.assert_allclose(energies, bias_energy, rtol=1e-6)


def test_unshaped_scores_match_the_plain_head(tricky: Path) -> None:
    ev = Evaluator(load_bundle(tricky), warn=False)
    cube = build_cubes(ev, ["ash-p"], [90.0], "local")["ash-p"]
    for split in ev.split_names:
        base = ev.base_logits(split)
        np.testing.assert_allclose(cube.unshaped[split].energy[0], energy_score(base).numpy(),
                                   rtol=1e-5, atol=1e-5)
        assert np.array_equal(cube.unshaped[split].pred[0], base.argmax(dim=1).numpy())


def test_rand_draws_continue_across_blocks(tricky: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ASH-RAND's draws come block by block; they must equal one draw of the whole split."""
    monkeypatch.setattr(cube_mod, "BLOCK_ROWS", 7)
    monkeypatch.setattr(cube_mod, "TORCH_CHUNK", 11)
    ev = Evaluator(load_bundle(tricky), warn=False)
    for engine in ENGINES:
        cube = build_cubes(ev, ["ash-rand"], [10.0, 60.0, 95.0], "local", seed=9,
                           engine=engine)["ash-rand"]
        assert assert_matches(cube, ev, "ash-rand", "local", 9) == 9


def test_thread_count_does_not_change_the_cube(tricky: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ev = Evaluator(load_bundle(tricky), warn=False)
    monkeypatch.setattr(cube_mod, "BLOCK_ROWS", 16)
    monkeypatch.setenv("ASH_CUBE_THREADS", "1")
    one = build_cubes(ev, ["ash-s", "ash-rand"], GRID, seed=2)
    monkeypatch.setenv("ASH_CUBE_THREADS", "3")
    three = build_cubes(ev, ["ash-s", "ash-rand"], GRID, seed=2)
    for m in one:
        for split in ev.split_names:
            assert np.array_equal(one[m].splits[split].energy, three[m].splits[split].energy)
            assert np.array_equal(one[m].splits[split].pred, three[m].splits[split].pred)
    monkeypatch.setenv("ASH_CUBE_THREADS", "many")
    with pytest.raises(ParameterError, match="ASH_CUBE_THREADS"):
        build_cubes(ev, ["ash-p"], [50.0])


def test_rand_depends_on_the_seed(tricky: Path) -> None:
    ev = Evaluator(load_bundle(tricky), warn=False)
    a = build_cubes(ev, ["ash-rand"], [50.0], seed=1)["ash-rand"]
    b = build_cubes(ev, ["ash-rand"], [50.0], seed=2)["ash-rand"]
    assert not np.array_equal(a.splits["far"].energy, b.splits["far"].energy)


def test_global_thresholds_equal_the_shapers(tricky: Path) -> None:
    ev = Evaluator(load_bundle(tricky), warn=False)
    cube = build_cubes(ev, ["ash-p"], GRID, "global")["ash-p"]
    expected = [ev.shaper("ash-p", p, "global").fitted_threshold for p in cube.grid]
    assert cube.fitted_thresholds.tolist() == expected


def test_percentiles_equal_percentile_of_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    for trial in range(60):
        n = int(rng.integers(1, 3000))
        x = (rng.gamma(1.0, 1.0, n) * rng.choice([1e-3, 1.0, 100.0])).astype(np.float32)
        if trial % 3 == 0:
            x = np.round(x, 1).astype(np.float32)
        grid = [0.0, 12.5, 50.0, 65.0, 99.0, 99.9999, *rng.uniform(0, 100, 10).tolist()]
        got = cube_mod.percentiles(x, grid)
        assert got.tolist() == [percentile_of(x, p) for p in grid]


def test_engines_agree(wide: Path) -> None:
    ev = Evaluator(load_bundle(wide), warn=False)
    a = build_cubes(ev, ["ash-s"], GRID, engine="native")["ash-s"]
    b = build_cubes(ev, ["ash-s"], GRID, engine="torch")["ash-s"]
    for split in ev.split_names:
        np.testing.assert_allclose(a.splits[split].energy, b.splits[split].energy, rtol=1e-4,
                                   atol=1e-4)


def test_native_kernel_is_available_here() -> None:
    """CI machines have a C compiler: the fast engine must not silently fall back."""
    assert kernel_status() == "native"


def test_point_metrics_matches_evaluate(synthetic_bundle: Path) -> None:
    ev = Evaluator(load_bundle(synthetic_bundle))
    for threshold in ("local", "global"):
        cubes = get_cubes(ev, ["ash-p", "ash-s", "ash-b", "ash-rand"], [60.0, 85.0],
                          threshold, seed=4, use_cache=False)
        for method, cube in cubes.items():
            for p in (60.0, 85.0):
                for score in ("energy", "msp", "maxlogit"):
                    for conv in ("id", "ood"):
                        want = ev.evaluate(method, p, threshold, score, conv, 4).to_dict()
                        got = point_metrics(cube, p, score, conv)
                        assert got["id_accuracy"] == want["id_accuracy"]
                        assert got["fitted_threshold"] == want["fitted_threshold"]
                        assert set(got["ood"]) == set(want["ood"])
                        for name in want["ood"]:
                            for k, v in want["ood"][name].items():
                                assert got["ood"][name][k] == pytest.approx(v, abs=5e-3)
                        assert got["average"].keys() == want["average"].keys()


def test_point_metrics_selects_ood_sets(synthetic_bundle: Path) -> None:
    cube = get_cube(load_bundle(synthetic_bundle), "ash-s", [90.0], use_cache=False)
    one = point_metrics(cube, 90.0, ood=["near"])
    assert list(one["ood"]) == ["near"]
    assert one["average"] == one["ood"]["near"]
    with pytest.raises(ParameterError, match="unknown OOD"):
        point_metrics(cube, 90.0, ood=["nope"])
    with pytest.raises(ParameterError, match="not in the cube grid"):
        point_metrics(cube, 80.0)


def test_non_cube_methods_are_refused(tricky: Path) -> None:
    ev = Evaluator(load_bundle(tricky), warn=False)
    others = [m for m in list_methods() if m not in CUBE_METHODS]
    assert others, "the registry should also hold non-ASH methods"
    for m in others:
        with pytest.raises(ParameterError, match="not computed by the cube engine"):
            build_cubes(ev, [m], [50.0])


def test_accuracy_curve(tricky: Path) -> None:
    ev = Evaluator(load_bundle(tricky), warn=False)
    cube = build_cubes(ev, ["ash-b"], GRID)["ash-b"]
    curve = cube.accuracy_curve()
    assert curve.shape == (len(GRID),)
    for j, p in enumerate(cube.grid):
        assert curve[j] == cube.id_accuracy(p)["shaped"]


# --------------------------------------------------------------------------- cache


def _only_file(root: Path) -> Path:
    files = list(root.rglob("*.safetensors"))
    assert len(files) == 1, files
    return files[0]


def test_cache_is_written_reused_and_keyed(tricky: Path, tmp_path: Path) -> None:
    bundle = load_bundle(tricky)
    first = get_cube(bundle, "ash-s", GRID, cache_dir=tmp_path)
    path = _only_file(tmp_path)
    assert path.parent.name == bundle.content_hash
    assert not first.meta.get("cached")
    second = get_cube(bundle, "ash-s", GRID, cache_dir=tmp_path)
    assert second.meta.get("cached") is True
    for split in first.splits:
        assert np.array_equal(first.splits[split].energy, second.splits[split].energy)
        assert np.array_equal(first.splits[split].pred, second.splits[split].pred)
    assert np.array_equal(first.labels, second.labels)
    # another grid, method, mode or seed is another file
    get_cube(bundle, "ash-s", [50.0], cache_dir=tmp_path)
    get_cube(bundle, "ash-s", GRID, threshold="global", cache_dir=tmp_path)
    get_cube(bundle, "ash-rand", GRID, seed=1, cache_dir=tmp_path)
    get_cube(bundle, "ash-rand", GRID, seed=2, cache_dir=tmp_path)
    assert len(list(tmp_path.rglob("*.safetensors"))) == 5
    assert not list(tmp_path.rglob("*.tmp"))


def test_default_cache_lives_beside_the_bundle(tmp_path: Path) -> None:
    root = make_tricky_bundle(tmp_path / "b")
    bundle = load_bundle(root)
    get_cube(bundle, "ash-p", [90.0])
    assert list((root / ".cube_cache" / bundle.content_hash).glob("*.safetensors"))
    assert load_bundle(root).content_hash == bundle.content_hash  # the cache is not content


def _rewrite_header(path: Path, edit) -> None:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    edit(header)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n:])


@pytest.mark.parametrize("damage", ["flip", "truncate", "stale", "garbage"])
def test_stale_or_corrupt_cube_is_rebuilt(tricky: Path, tmp_path: Path, damage: str) -> None:
    bundle = load_bundle(tricky)
    good = get_cube(bundle, "ash-b", GRID, cache_dir=tmp_path)
    path = _only_file(tmp_path)
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[-5] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) - 100]))
    elif damage == "garbage":
        path.write_bytes(b"not a cube at all")
    else:
        def edit(h: dict) -> None:
            key = json.loads(h["__metadata__"]["ash_cube"])
            key["grid"] = [1.0]
            h["__metadata__"]["ash_cube"] = json.dumps(key, sort_keys=True)
        _rewrite_header(path, edit)
    with pytest.warns(UserWarning, match="rebuilding the score cube"):
        again = get_cube(bundle, "ash-b", GRID, cache_dir=tmp_path)
    assert not again.meta.get("cached")
    assert np.array_equal(again.splits["far"].energy, good.splits["far"].energy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = get_cube(bundle, "ash-b", GRID, cache_dir=tmp_path)  # repaired on disk
    assert third.meta.get("cached") is True


def test_load_cube_rejects_a_different_key(tricky: Path, tmp_path: Path) -> None:
    bundle = load_bundle(tricky)
    ev = Evaluator(bundle, warn=False)
    get_cube(ev, "ash-p", GRID, cache_dir=tmp_path)
    key = cube_key(bundle.content_hash, "ash-p", "local", np.asarray(sorted(GRID)), 0,
                   ev.split_names)
    path = cube_path(tmp_path, key)
    assert load_cube(path, key).method == "ash-p"
    # regression: the checksum's sort key re-read and re-parsed the file header once per
    # comparison (per array and more); the tensor order is read once per load
    calls = []
    real = cube_mod._offset_order
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cube_mod, "_offset_order", lambda p: calls.append(p) or real(p))
        assert load_cube(path, key).method == "ash-p"
    assert len(calls) == 1
    other = dict(key, bundle="0" * 16)
    with pytest.raises(cube_mod.CubeCacheError, match="stale"):
        load_cube(path, other)


def test_no_cache_writes_nothing(tricky: Path, tmp_path: Path) -> None:
    get_cube(load_bundle(tricky), "ash-p", GRID, cache_dir=tmp_path, use_cache=False)
    assert not list(tmp_path.rglob("*"))


def test_bad_grid_and_methods(tricky: Path) -> None:
    ev = Evaluator(load_bundle(tricky), warn=False)
    with pytest.raises(ParameterError):
        build_cubes(ev, ["ash-p"], [100.0])
    with pytest.raises(ParameterError):
        build_cubes(ev, ["ash-p"], [])
    with pytest.raises(ParameterError, match="unknown method"):
        build_cubes(ev, ["ash-x"], [50.0])
    with pytest.raises(ParameterError, match="engine"):
        build_cubes(ev, ["ash-p"], [50.0], engine="gpu")


# --------------------------------------------------------------------------- shared metrics


@pytest.mark.parametrize("convention", ["id", "ood"])
def test_prepared_id_scores_reused_across_sets_equal_sklearn(convention: str) -> None:
    """The lookup path sorts ID scores once (IdScores) and reuses them for every OOD set."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from ash_core.metrics import IdScores, ood_metrics, ood_metrics_many

    rng = np.random.default_rng(11)
    for trial in range(40):
        n, m = int(rng.integers(1, 400)), int(rng.integers(1, 300))
        ident = rng.normal(0.5, 1.0, n)
        ood = rng.normal(0.0, 1.0, m)
        if trial % 2:  # heavy ties, within and across the two sets
            ident, ood = np.round(ident, 1), np.round(ood, 1)
        if trial % 7 == 0:
            ood[: m // 2] = ident[0]
        ids = IdScores(ident)
        got = ids.metrics(ood, convention)
        assert ids.metrics(ood[::-1].copy(), convention) == got
        many = ood_metrics_many(ident, {"a": ood, "b": ood[::-1].copy()}, convention)
        assert many["a"] == got == many["b"] == ood_metrics(ident, ood, convention)
        labels = np.r_[np.ones(n), np.zeros(m)]
        scores = np.r_[ident, ood]
        assert got.auroc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        assert got.aupr_in == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
        assert got.aupr_out == pytest.approx(
            average_precision_score(1 - labels, -scores), abs=1e-12)


def test_cubes_handed_out_are_read_only(synthetic_bundle, tmp_path):
    """A cube is shared (dashboard sessions, sweep): nobody may write into its arrays."""
    from ash_core.sweep import get_cube

    for use_cache in (False, True, True):  # built, built+cached, loaded from the cache
        cube = get_cube(load_bundle(synthetic_bundle), "ash-s", [50.0, 90.0],
                        cache_dir=tmp_path, use_cache=use_cache)
        scores = cube.scores(cube.id_name, 90.0)
        with pytest.raises(ValueError, match="read-only"):
            scores[0] = 0.0
        with pytest.raises(ValueError, match="read-only"):
            cube.splits[cube.id_name].pred[0, 0] = 1
