"""The layer cube: a layer's sweep at every integer p the dashboard's slider takes (0..99),
so that a move of p at an inner layer is a lookup at any p instead of a replay through the
network's tail (seconds per p at ResNet-20's layer1).

It is the grid sweep (``sweep.LAYER_GRID``, shared with "Where to ASH" and the CLI) joined
with a sweep of the other integer p, each cached on disk per layer like every layer sweep
(``cache``). Both are the exact replay's computation (``replay.replay_batches``: each
shaper's tail runs on the same batch of the same split as ``LayerEvaluator.evaluate``), so
a lookup equals the exact replay bit for bit. The cost is one tail forward per (row, p): a
background job for the dashboard, once per bundle, variant and layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from ash_core.bundle import Bundle, load_bundle
from ash_core.layers.replay import BATCH
from ash_core.layers.sweep import LAYER_GRID, LayerSweep, layer_sweep

#: every p the dashboard's integer slider can take (the ASH variants' range [0, 100))
EVERY_P = tuple(range(0, 100))
#: the two sweeps a cube joins, each its own disk-cache entry: the layer grid (shared with
#: "Where to ASH") and the other integer p; ``make layers`` builds them in parallel
PARTS = (tuple(float(p) for p in LAYER_GRID),
         tuple(float(p) for p in EVERY_P if p not in LAYER_GRID))
Progress = Callable[[int, int], None]


def layer_cube(bundle: Bundle, method: str, layer: str, seed: int = 0, device: str = "auto",
               batch: int = BATCH, cache: bool = True,
               progress: Progress = lambda done, total: None) -> LayerSweep:
    """The sweep of ``method`` at ``layer`` over ``EVERY_P`` (a ``LayerSweep`` whose grid is
    0..99). ``progress(done, total)`` counts tail passes over batches: the grid's 20 p per
    batch, then the other 80 (a grid sweep read from disk starts the bar at its share)."""
    rest = list(PARTS[1])
    n_grid, n_all = len(LAYER_GRID), len(LAYER_GRID) + len(rest)
    def grid_phase(done: int, total: int) -> None:
        progress(done * n_grid, total * n_all)

    def rest_phase(done: int, total: int) -> None:
        progress(total * n_grid + done * len(rest), total * n_all)

    grid = layer_sweep(bundle, [layer], method, LAYER_GRID, seed, device, batch, cache,
                       progress=grid_phase)
    other = layer_sweep(bundle, [layer], method, rest, seed, device, batch, cache,
                        progress=rest_phase)
    return join(grid, other)


def build_part(path: str, layer: str, grid: tuple[float, ...], method: str,
               device: str = "auto", threads: int = 1) -> tuple[str, int, float, float, bool]:
    """One of a cube's sweeps (``PARTS``) built into the disk cache of the bundle at ``path``,
    on ``threads`` torch threads (a worker process's job: ``make layers`` runs one per core;
    the replay's numbers do not depend on the thread count). Returns (layer, p count, wall s,
    CPU s, whether it was read from the cache)."""
    torch.set_num_threads(threads)
    t0, c0 = time.perf_counter(), time.process_time()
    sweep = layer_sweep(load_bundle(path), [layer], method, grid, device=device)
    return layer, len(grid), time.perf_counter() - t0, time.process_time() - c0, sweep.cached


def join(a: LayerSweep, b: LayerSweep) -> LayerSweep:
    """One sweep over the union of two sweeps' grids (p in increasing order) of the same
    bundle, method and layers; the unshaped arrays are ``a``'s (both hold the same)."""
    if a.method != b.method or a.layers != b.layers or a.splits != b.splits:
        raise ValueError("join: sweeps of different methods, layers or splits")
    grid = np.asarray([*a.grid, *b.grid])
    order = np.argsort(grid, kind="stable")

    def stacked(x: dict[str, np.ndarray], y: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.concatenate([x[k], y[k]])[order] for k in x}

    return LayerSweep(list(a.layers), [float(p) for p in grid[order]], a.method, a.splits,
                      a.labels, stacked(a.energy, b.energy), stacked(a.pred, b.pred),
                      a.base_pred, a.base_energy, a.seconds + b.seconds, a.cached and b.cached)
