"""The score cube against per-p evaluation, for every ASH method, both threshold modes,
both backends, with ties and all-zero rows; lookups as EvalResult. The cache: test_cube_cache.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cube_helpers import assert_metrics_close, assert_scores_close

from ash_core import Setting, SplitData, write_bundle
from ash_core.bundle import load_bundle
from ash_core.cube import (
    CUBE_METHODS,
    build_cubes,
    get_cube,
    get_cubes,
    is_cube_method,
    kernel_status,
    point_result,
)
from ash_core.cube import build as build_mod
from ash_core.cube import kernel as kernel_mod
from ash_core.cube.thresholds import percentiles
from ash_core.engine.exact import Evaluator
from ash_core.errors import ParameterError
from ash_core.maths.scores import energy_score, maxlogit_score, msp_score
from ash_core.maths.shaping import percentile_of
from ash_core.methods import list_methods

BACKENDS = ["native", "torch"]
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
    shaper = ev.shaper(Setting(method, {"p": p}, threshold, "energy", "id", seed))
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


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("threshold", ["local", "global"])
def test_cube_equals_per_p_evaluation(tricky: Path, threshold: str, backend: str) -> None:
    ev = Evaluator(load_bundle(tricky), warn=False)
    cubes = build_cubes(ev, list(CUBE_METHODS), GRID, threshold, seed=5, backend=backend)
    assert set(cubes) == set(CUBE_METHODS)
    for method, cube in cubes.items():
        assert cube.backend == backend
        assert cube.grid.tolist() == sorted(GRID)
        assert assert_matches(cube, ev, method, threshold, 5) == len(GRID) * 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_cube_wide_head_with_padding(wide: Path, backend: str) -> None:
    ev = Evaluator(load_bundle(wide), warn=False)
    grid = [0.0, 12.0, 50.0, 77.0, 99.0]
    for threshold in ("local", "global"):
        cubes = build_cubes(ev, ["ash-s", "ash-b"], grid, threshold, backend=backend)
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
    monkeypatch.setattr(build_mod, "BLOCK_ROWS", 7)
    monkeypatch.setattr(build_mod, "TORCH_CHUNK", 11)
    ev = Evaluator(load_bundle(tricky), warn=False)
    for backend in BACKENDS:
        cube = build_cubes(ev, ["ash-rand"], [10.0, 60.0, 95.0], "local", seed=9,
                           backend=backend)["ash-rand"]
        assert assert_matches(cube, ev, "ash-rand", "local", 9) == 9


def test_thread_count_does_not_change_the_cube(tricky: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ev = Evaluator(load_bundle(tricky), warn=False)
    monkeypatch.setattr(build_mod, "BLOCK_ROWS", 16)
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


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["react", "scale"])
def test_react_and_scale_cubes_equal_per_p_evaluation(tricky: Path, wide: Path,
                                                      method: str, backend: str) -> None:
    """The "clip" and "row-scale" grids (strategies.py) against the shaper at every p, on
    both backends (pre-ReLU data, blocks and thresholds: test_cube_strategies.py)."""
    for path, grid in ((tricky, GRID), (wide, [0.0, 12.0, 50.0, 77.0, 99.0])):
        ev = Evaluator(load_bundle(path), warn=False)
        cube = build_cubes(ev, [method, "ash-s"], grid, backend=backend)[method]
        assert cube.backend == backend and cube.method == method
        assert assert_matches(cube, ev, method, "local", 0) == len(grid) * 3
        fitted = [ev.shaper(Setting(method, {"p": p})).cutoff for p in cube.grid]
        assert (cube.cutoffs is None and fitted == [None] * len(grid)) or \
            cube.cutoffs.tolist() == fitted


def test_rand_depends_on_the_seed(tricky: Path) -> None:
    ev = Evaluator(load_bundle(tricky), warn=False)
    a = build_cubes(ev, ["ash-rand"], [50.0], seed=1)["ash-rand"]
    b = build_cubes(ev, ["ash-rand"], [50.0], seed=2)["ash-rand"]
    assert not np.array_equal(a.splits["far"].energy, b.splits["far"].energy)


def test_global_thresholds_equal_the_shapers(tricky: Path) -> None:
    ev = Evaluator(load_bundle(tricky), warn=False)
    cube = build_cubes(ev, ["ash-p"], GRID, "global")["ash-p"]
    expected = [ev.shaper(Setting("ash-p", {"p": p}, "global")).cutoff for p in cube.grid]
    assert cube.cutoffs.tolist() == expected


def test_percentiles_equal_percentile_of_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    for trial in range(60):
        n = int(rng.integers(1, 3000))
        x = (rng.gamma(1.0, 1.0, n) * rng.choice([1e-3, 1.0, 100.0])).astype(np.float32)
        if trial % 3 == 0:
            x = np.round(x, 1).astype(np.float32)
        grid = [0.0, 12.5, 50.0, 65.0, 99.0, 99.9999, *rng.uniform(0, 100, 10).tolist()]
        got = percentiles(x, grid)
        assert got.tolist() == [percentile_of(x, p) for p in grid]


def test_backends_agree(wide: Path) -> None:
    ev = Evaluator(load_bundle(wide), warn=False)
    a = build_cubes(ev, ["ash-s"], GRID, backend="native")["ash-s"]
    b = build_cubes(ev, ["ash-s"], GRID, backend="torch")["ash-s"]
    for split in ev.split_names:
        np.testing.assert_allclose(a.splits[split].energy, b.splits[split].energy, rtol=1e-4,
                                   atol=1e-4)


def test_native_kernel_is_used_where_a_compiler_exists() -> None:
    """Where a C compiler exists the fast backend must not silently fall back; where none
    exists the status names the reason (the torch fallback is pinned below)."""
    try:
        kernel_mod.find_compiler()
    except RuntimeError:
        assert "no C compiler" in kernel_status()
    else:
        assert kernel_status() == "native"


def test_without_a_compiler_the_torch_backend_serves_exact_cubes(
        tricky: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented fallback: CC names no program, so auto picks torch, which is exact."""
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(kernel_mod, "_cache", {})
    monkeypatch.setattr(kernel_mod, "_why", {})
    ev = Evaluator(load_bundle(tricky), warn=False)
    assert kernel_mod.load_kernel(16) is None
    assert "unavailable" in kernel_status(16)
    cubes = build_cubes(ev, list(CUBE_METHODS), GRID, "global", seed=5)
    for method, cube in cubes.items():
        assert cube.backend == "torch"
        assert assert_matches(cube, ev, method, "global", 5) == len(GRID) * 3
    with pytest.raises(ParameterError, match="native cube kernel is unavailable"):
        build_cubes(ev, ["ash-p"], GRID, backend="native")


def test_point_result_equals_evaluate_up_to_float32_rounding(synthetic_bundle: Path) -> None:
    """Every value, not only the keys: scores to 1e-5 relative, metrics within a swapped
    near-tied pair (cube_helpers), accuracies and fitted thresholds exactly."""
    ev = Evaluator(load_bundle(synthetic_bundle))
    n_id = len(ev.bundle.id_split)
    n_ood = {n: len(ev.bundle.split(n)) for n in ev.ood_names}
    for threshold in ("local", "global"):
        cubes = get_cubes(ev, ["ash-p", "ash-s", "ash-b", "ash-rand"], [60.0, 85.0],
                          threshold, seed=4, use_cache=False)
        for method, cube in cubes.items():
            for p in (60.0, 85.0):
                for score in ("energy", "msp", "maxlogit"):
                    for conv in ("id", "ood"):
                        what = (threshold, method, p, score, conv)
                        want = ev.evaluate(Setting(method, {"p": p}, threshold, score, conv, 4))
                        got = point_result(cube, p, score, conv)
                        assert (got.engine, want.engine) == ("cube", "exact")
                        assert got.id_accuracy == want.id_accuracy, what
                        assert got.cutoff == want.cutoff, what
                        assert_scores_close(got.id_scores, want.id_scores, what)
                        for name in want.ood_scores:
                            assert_scores_close(got.ood_scores[name], want.ood_scores[name],
                                                what)
                        assert_metrics_close(got.to_dict()["ood"], want.to_dict()["ood"],
                                             n_id, n_ood, conv, what)
                        assert_metrics_close({"avg": got.average}, {"avg": want.average},
                                             n_id, {"avg": min(n_ood.values())}, conv, what)


def test_point_result_selects_ood_sets(synthetic_bundle: Path) -> None:
    cube = get_cube(load_bundle(synthetic_bundle), "ash-s", [90.0], use_cache=False)
    one = point_result(cube, 90.0, ood=["near"])
    assert list(one.ood) == ["near"] and list(one.ood_scores) == ["near"]
    assert one.average == one.ood["near"].as_dict()
    with pytest.raises(ParameterError, match="unknown OOD"):
        point_result(cube, 90.0, ood=["nope"])
    with pytest.raises(ParameterError, match="not in the cube grid"):
        point_result(cube, 80.0)


def test_non_cube_methods_are_refused(tricky: Path) -> None:
    ev = Evaluator(load_bundle(tricky), warn=False)
    others = [m for m in list_methods() if not is_cube_method(m)]
    assert others, "the registry should also hold non-ASH methods"
    for m in others:
        with pytest.raises(ParameterError, match="not computed by the score cube"):
            build_cubes(ev, [m], [50.0])


def test_accuracy_curve(tricky: Path) -> None:
    ev = Evaluator(load_bundle(tricky), warn=False)
    cube = build_cubes(ev, ["ash-b"], GRID)["ash-b"]
    curve = cube.accuracy_curve()
    assert curve.shape == (len(GRID),)
    for j, p in enumerate(cube.grid):
        assert curve[j] == cube.id_accuracy(p)["shaped"]


# --------------------------------------------------------------------------- shared metrics


@pytest.mark.parametrize("convention", ["id", "ood"])
def test_prepared_id_scores_reused_across_sets_equal_sklearn(convention: str) -> None:
    """The lookup path sorts ID scores once (IdScores) and reuses them for every OOD set."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from ash_core.maths.metrics import IdScores, ood_metrics, ood_metrics_many

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
