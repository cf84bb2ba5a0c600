"""The native ReAct ("clip") and SCALE ("row-scale") grids (``kernel.c``: ash_clip_rows,
ash_scale_rows) against exact evaluation and the torch backend, on data that stresses
them: pre-ReLU features (negative values, so negative clips and rows whose rest below the
clip is negative), exact ties, zeros, all-zero, all-negative and constant rows, heads
narrower and wider than one class tile (with padding), and row counts that are not a
multiple of either row block (the Python block, the kernel's 64-row block)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cube_helpers import assert_metrics_close, assert_scores_close
from test_cube import assert_matches

from ash_core import Setting, SplitData, write_bundle
from ash_core.bundle import load_bundle
from ash_core.cube import build as build_mod
from ash_core.cube import build_cubes, point_result
from ash_core.cube import kernel as kernel_mod
from ash_core.engine.exact import Evaluator
from ash_core.errors import ParameterError

METHODS = ["react", "scale"]
GRID = [0.0, 5.0, 20.0, 33.0, 50.0, 65.0, 80.0, 85.0, 90.0, 97.0, 99.0]


def make_pre_relu_bundle(path: Path, dim: int, classes: int, n: int, seed: int,
                         relu: bool = False) -> Path:
    """Quantised pre-ReLU features: about a third negative, many exact ties and zeros
    (``relu``: the same after a ReLU, SCALE's domain: on rows whose top-k sum is negative
    or near 0 its factor exp(s1/s2) overflows, in the exact path too)."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(classes, dim)).astype(np.float32)
    bias = rng.normal(scale=0.1, size=classes).astype(np.float32)

    def feats(m: int, shift: float) -> np.ndarray:
        x = np.round(rng.normal(shift, 1.0, size=(m, dim)) * 4) / 4
        x[:2] = 0.0                          # all-zero rows
        x[2] = -np.abs(x[2]) - 0.25          # an all-negative row
        x[3] = x[4]                          # duplicate rows
        x[5] = 0.5                           # a constant row: every unit tied
        x[6, : dim // 2] = 0.0               # zeros between positives and negatives
        return (np.maximum(x, 0.0) if relu else x).astype(np.float32)

    splits = [
        SplitData("id_test", "id", feats(n, 0.4), rng.integers(0, classes, n)),
        SplitData("id_train", "id_fit", feats(n, 0.4), rng.integers(0, classes, n)),
        SplitData("far", "ood", feats(n - 13, 0.0)),
        SplitData("near", "ood", feats(n - 29, 0.2)),
    ]
    return write_bundle(path, weight, bias, [f"c{i}" for i in range(classes)], splits)


@pytest.fixture(scope="module", params=[(40, 7, 139), (150, 70, 71)], ids=["narrow", "wide"])
def bundles(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per method, narrow: C = 7 (one 16-class tile, padded), wide: C = 70 (two 64-class
    tiles): pre-ReLU features for ReAct, the same after a ReLU for SCALE."""
    dim, classes, n = request.param
    root = tmp_path_factory.mktemp("strategies")
    return {m: make_pre_relu_bundle(root / f"{m}{classes}", dim, classes, n, seed=classes,
                                    relu=m == "scale") for m in METHODS}


def need_native() -> None:
    """Skip where no C compiler exists (test_cube pins that fallback and that a compiler,
    where present, is used)."""
    if kernel_mod.load_kernel(16) is None:
        pytest.skip(f"no native kernel here: {kernel_mod.kernel_status(16)}")


@pytest.mark.parametrize("method", METHODS)
def test_native_grid_equals_exact_evaluation(bundles: dict[str, Path], method: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Every score and the argmax at every grid p, rows in blocks of 5 on 2 threads."""
    need_native()
    monkeypatch.setattr(build_mod, "BLOCK_ROWS", 5)
    monkeypatch.setenv("ASH_CUBE_THREADS", "2")
    ev = Evaluator(load_bundle(bundles[method]), warn=False)
    cube = build_cubes(ev, [method], GRID, backend="native")[method]
    assert cube.backend == "native"
    assert assert_matches(cube, ev, method, "local", 0) == len(GRID) * 3
    if method == "react":
        fitted = np.asarray([ev.shaper(Setting(method, {"p": p})).cutoff for p in cube.grid])
        assert cube.cutoffs.tolist() == fitted.tolist()
        assert fitted.min() < 0 < fitted.max()  # negative clips are exercised


@pytest.mark.parametrize("backend", ["native", "torch"])
@pytest.mark.parametrize("method", METHODS)
def test_point_results_equal_evaluate(bundles: dict[str, Path], method: str,
                                      backend: str) -> None:
    """Every metric of every OOD set under both conventions, ID accuracy shaped and
    unshaped, from the cube against ``Evaluator.evaluate``: rows whose logits tie exactly
    there (every unit clipped, at p = 0 of pre-ReLU data) must tie in the cube too."""
    if backend == "native":
        need_native()
    ev = Evaluator(load_bundle(bundles[method]), warn=False)
    n_id = len(ev.bundle.id_split)
    n_ood = {n: len(ev.bundle.split(n)) for n in ev.ood_names}
    cube = build_cubes(ev, [method], GRID, backend=backend)[method]
    for p in (0.0, 65.0, 90.0, 99.0):
        for score in ("energy", "msp", "maxlogit"):
            for conv in ("id", "ood"):
                what = (method, p, score, conv)
                want = ev.evaluate(Setting(method, {"p": p}, "local", score, conv, 0))
                got = point_result(cube, p, score, conv)
                assert len(want.id_accuracy) == 2, what  # shaped and unshaped
                assert got.id_accuracy == want.id_accuracy, what
                assert got.cutoff == want.cutoff, what
                if score != "msp":  # MSP's rounding scales with the logits (SCALE's are
                    # large): pinned at that scale by the test above
                    assert_scores_close(got.id_scores, want.id_scores, what)
                    for name in want.ood_scores:
                        assert_scores_close(got.ood_scores[name], want.ood_scores[name], what)
                assert_metrics_close(got.to_dict()["ood"], want.to_dict()["ood"], n_id,
                                     n_ood, conv, what)


@pytest.mark.parametrize("method", METHODS)
def test_native_and_torch_backends_agree(bundles: dict[str, Path], method: str) -> None:
    need_native()
    ev = Evaluator(load_bundle(bundles[method]), warn=False)
    nat = build_cubes(ev, [method], GRID, backend="native")[method]
    tor = build_cubes(ev, [method], GRID, backend="torch")[method]
    assert (nat.backend, tor.backend) == ("native", "torch")
    for split in ev.split_names:
        a, b = nat.splits[split], tor.splits[split]
        for field in ("energy", "maxlogit"):
            assert_scores_close(getattr(a, field), getattr(b, field), (method, split, field))
        assert_scores_close(nat.unshaped[split].energy, tor.unshaped[split].energy, split)
        assert np.array_equal(nat.unshaped[split].pred, tor.unshaped[split].pred)
        assert np.mean(a.pred == b.pred) > 0.99, (method, split)


@pytest.mark.parametrize("method", METHODS)
def test_blocks_and_threads_do_not_change_the_native_grid(bundles: dict[str, Path],
                                                          method: str,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """Row ranges are independent: 3-row blocks on 3 threads equal one block on one thread
    bit for bit (SCALE's dense products are compared to float rounding: BLAS may block
    differently for a different number of rows)."""
    need_native()
    ev = Evaluator(load_bundle(bundles[method]), warn=False)
    monkeypatch.setenv("ASH_CUBE_THREADS", "1")
    one = build_cubes(ev, [method], GRID, backend="native")[method]
    monkeypatch.setattr(build_mod, "BLOCK_ROWS", 3)
    monkeypatch.setenv("ASH_CUBE_THREADS", "3")
    many = build_cubes(ev, [method], GRID, backend="native")[method]
    for split in ev.split_names:
        a, b = one.splits[split], many.splits[split]
        if method == "react":
            assert np.array_equal(a.energy, b.energy) and np.array_equal(a.pred, b.pred)
        else:
            assert_scores_close(b.energy, a.energy, split)
            assert np.mean(a.pred == b.pred) > 0.99, split


def test_without_a_compiler_react_and_scale_fall_back_to_torch(
        bundles: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No C compiler: backend auto serves both grids from torch, still exact; "native" is
    a clear error (as for the ASH variants)."""
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(kernel_mod, "_cache", {})
    monkeypatch.setattr(kernel_mod, "_why", {})
    for method in METHODS:
        ev = Evaluator(load_bundle(bundles[method]), warn=False)
        cube = build_cubes(ev, [method], GRID[::3])[method]
        assert cube.backend == "torch", method
        assert assert_matches(cube, ev, method, "local", 0) == len(GRID[::3]) * 3
        with pytest.raises(ParameterError, match="native cube kernel is unavailable"):
            build_cubes(ev, [method], GRID, backend="native")
