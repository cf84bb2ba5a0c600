"""The ReAct ("clip") and SCALE ("row-scale") part of ``bench_sweep.py``: preparing each
method's cube over p = 0..99 (ReAct's clips fitted on id_fit included), timed next to the
dense pass of the same run (at most 5x one dense logits pass), per backend, and
its exactness on a row sample against the shaper + head."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ash_core.cube import build_cubes
from ash_core.engine.exact import Evaluator
from ash_core.maths.scores import energy_score
from ash_core.setting import Setting

METHODS = ("react", "scale")
CHECK_PS = (0.0, 10.0, 65.0, 85.0, 90.0, 99.0)


def point_error(cube, name: str, p: float, logits: torch.Tensor) -> tuple[float, int]:
    """Max relative energy error of the cube's first ``len(logits)`` rows of ``name`` at
    ``p`` against the reference ``logits``, and argmax mismatches that are not near-ties."""
    rows = logits.shape[0]
    ref = energy_score(logits).numpy()
    scale = np.maximum(np.abs(ref), 1e-2 * logits.abs().amax(1).numpy())
    worst = float(np.max(np.abs(cube.scores(name, p)[:rows] - ref) / scale))
    top2 = torch.topk(logits, 2, dim=1).values
    tie = (top2[:, 0] - top2[:, 1]).numpy() <= 1e-5 * logits.abs().amax(1).numpy()
    return worst, int(((cube.preds(name, p)[:rows] != logits.argmax(1).numpy()) & ~tie).sum())


def grid_exactness(ev: Evaluator, method: str, cube, rows: int) -> tuple[float, int, int]:
    """Max relative energy error and argmax mismatches (excluding near-ties) on the first
    ``rows`` rows of every split, at ``CHECK_PS``."""
    worst, mismatches, checked = 0.0, 0, 0
    for name in ev.split_names:
        x = ev.features(name)[:rows]
        for p in CHECK_PS:
            err, bad = point_error(cube, name, p,
                                   torch.addmm(ev.bias, ev.shaper(Setting(method, {"p": p}))(x), ev.weight.T))
            worst, mismatches, checked = max(worst, err), mismatches + bad, checked + len(x)
    return worst, mismatches, checked


def grid_ratios(ev: Evaluator, grid: list[float], dense_cpu: float, dense_wall: float,
                rows: int, backends: tuple[str, ...], timed: Callable, repeat: int = 1) -> dict:
    """Preparation time / dense pass per method and backend, and the exactness of the
    first backend's cube (ReAct only where the bundle has id_fit to fit its clips on);
    native timings are the best of ``repeat``."""
    res: dict = {"grid_methods": [m for m in METHODS
                                  if m != "react" or ev.bundle.id_fit is not None],
                 "grid_backends": list(backends)}
    for method in res["grid_methods"]:
        for backend in backends:
            t, cubes = timed(lambda m=method, b=backend: build_cubes(ev, [m], grid, backend=b),
                             repeat if backend == "native" else 1)  # torch: slow, once
            key = f"{method}_{backend}"
            res[f"{key}_cpu_s"], res[f"{key}_s"] = t.cpu, t.wall
            res[f"{key}_over_dense_cpu"] = t.cpu / dense_cpu
            res[f"{key}_over_dense"] = t.wall / dense_wall
            if backend == backends[0]:
                res[f"{method}_err"], res[f"{method}_mismatch"], res[f"{method}_checked"] = \
                    grid_exactness(ev, method, cubes[method], rows)
    return res


def report_grids(r: dict) -> None:
    backends = r["grid_backends"]
    for method in r["grid_methods"]:
        cells = [f"{b} {r[f'{method}_{b}_cpu_s']:.3f} s CPU = "
                 f"{r[f'{method}_{b}_over_dense_cpu']:.2f}x dense CPU, "
                 f"{r[f'{method}_{b}_over_dense']:.2f}x wall" for b in backends]
        print(f"cube {method:<6} p=0..99 (goal <= 5x)   " + "; ".join(cells))
        print(f"  exactness ({backends[0]}): max rel energy error {r[f'{method}_err']:.2e}; "
              f"argmax mismatches {r[f'{method}_mismatch']}/{r[f'{method}_checked']}")
