"""Cube grids of the methods outside the ASH prefix family: ReAct ("clip"), SCALE ("row-scale").

One pass over each split, every grid p at once, on the native kernel (``ash_clip_rows``,
``ash_scale_rows``: scores reduced on the fly, no ``[rows, C]`` logits per p) or on torch
(the fallback without a C compiler, and the CUDA path, on the Selection's device):

* **clip** (ReAct at p): clip ``c_p`` = the p-th percentile of id_fit activations (bit for
  bit as the shaper fits it). With each row sorted once (descending), the units at or
  above ``c_p`` are a prefix of length ``k_p = #(x >= c_p)``, so the clipped logits are
  ``c_p * G_k + (z - A_k) + b`` with the running sums ``A_k = sum_{r<k} v_r W[:, o_r]``,
  ``G_k = sum_{r<k} W[:, o_r]`` (the ASH-P and ASH-B accumulators) and ``z = x W^T``
  (the rest ``z - A_k`` is set to exactly 0 where no non-zero unit is left, so a clip at
  0 gives the bias exactly, with the exact path's ties).
* **row-scale** (SCALE at p): a per-row scalar on the unshaped logits,
  ``exp(s1 / s2(p)) * z + b`` with ``s2(p)`` the sum of the row's ``k = kept_count(D, p)``
  largest values (a prefix sum of the sorted row; ratio 0, factor 1, where ``s2 = 0``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ash_core.cube import kernel as _kernel
from ash_core.cube import native as _native
from ash_core.cube.model import SplitCube, empty_fields
from ash_core.cube.thresholds import fit_cutoffs
from ash_core.cube.torch_backend import (
    Chunk,
    band_product,
    chunk_rows,
    copy_out,
    device_fields,
    prepare_chunk,
    store_scores,
    store_unshaped,
)
from ash_core.engine.store import Selection
from ash_core.maths.shaping import kept_count, scale_factor

Tick = Callable[[int], None]


def _clip_walk(ch: Chunk, z: torch.Tensor, clips: torch.Tensor, wt: torch.Tensor,
               bias: torch.Tensor, bufs: tuple[torch.Tensor, ...]) -> None:
    """ReAct logits at every grid point of one chunk, from the largest clip to the smallest."""
    m, d = ch.vals.shape
    ranks = torch.arange(d, device=wt.device)
    a = wt.new_zeros(m, wt.shape[1])
    g = torch.zeros_like(a)
    prev = torch.zeros(m, dtype=torch.int64, device=wt.device)
    # 1 + the last rank holding a non-zero value: from there on the unclipped rest is
    # exactly 0, and so must be z - A_k (its rounding would break the exact path's ties)
    nz_end = ((ch.vals != 0) * (ranks + 1)).amax(dim=1)
    g_all = wt.sum(dim=0)
    for j in range(ch.kept.shape[1] - 1, -1, -1):  # larger p: larger clip, fewer above it
        k = ch.kept[:, j]
        band = (ranks[None, :] >= prev[:, None]) & (ranks[None, :] < k[:, None])
        nnz = int(band.sum())
        if nnz:
            a += band_product(ch, band, ch.vals[band], wt)
            g += band_product(ch, band, wt.new_ones(nnz), wt)
        prev = k
        rest = torch.where((k >= nz_end)[:, None], z.new_zeros(()), z - a)
        # all clipped: one G for every such row, so their logits tie exactly (as the exact
        # path's identical rows min(x, c) do), whatever each row's order
        clipped = torch.where((k == d)[:, None], g_all, g)
        store_scores(bufs, 0, j, clips[j] * clipped + rest + bias)


def _row_scale_walk(ch: Chunk, z: torch.Tensor, counts: np.ndarray, bias: torch.Tensor,
                    bufs: tuple[torch.Tensor, ...]) -> None:
    """SCALE logits at every grid point of one chunk: factor(p) x unshaped logits + b."""
    m = ch.vals.shape[0]
    prefix = torch.cumsum(ch.vals.to(torch.float64), dim=1).to(torch.float32)
    for j, k in enumerate(counts):
        s2 = prefix[:, k - 1] if k > 0 else z.new_zeros(m)
        store_scores(bufs, 0, j, scale_factor(ch.s1, s2)[:, None] * z + bias)


def _split_cube(strategy: str, x: np.ndarray, sel: Selection, grid: np.ndarray,
                clips: np.ndarray | None, chunk: int, tick: Tick) -> tuple[SplitCube, SplitCube]:
    """One split's cube under ``strategy`` and its unshaped scores, on ``sel.device``."""
    dev = sel.device
    outs = empty_fields(1, grid.size, x.shape[0])
    full = empty_fields(1, x.shape[0])
    wt, bias = sel.weight.T.contiguous().to(dev), sel.bias.to(dev)
    counts = np.asarray([kept_count(x.shape[1], p) for p in grid])
    clips32 = None if clips is None else torch.from_numpy(clips.astype(np.float32)).to(dev)
    for lo in range(0, x.shape[0], chunk):
        rows = torch.from_numpy(np.ascontiguousarray(x[lo:lo + chunk])).to(dev)
        # clipped units: x >= c (ties at c are the same clipped or not; counted as x > the
        # float32 just below c)
        below = (None if clips32 is None
                 else torch.nextafter(clips32, clips32.new_tensor(-np.inf)))
        ch = prepare_chunk(rows, None, None if clips is not None else counts, below)
        z = rows @ wt
        bufs = device_fields(1, grid.size, rows.shape[0], dev)
        if strategy == "clip":
            _clip_walk(ch, z, clips32, wt, bias, bufs)
        else:
            _row_scale_walk(ch, z, counts, bias, bufs)
        copy_out(bufs, outs, lo)
        store_unshaped(full, lo, z + bias)
        tick(rows.shape[0])
    return SplitCube(*(o[0] for o in outs)), SplitCube(*full)


def _native_split_cube(strategy: str, x: np.ndarray, grid: np.ndarray,
                       clips: np.ndarray | None, native: tuple, block: int, threads: int,
                       tick: Tick) -> tuple[SplitCube, SplitCube]:
    """One split's cube under ``strategy`` and its unshaped scores, on the C kernel
    (``native``: the loaded kernel, the tiled head, SCALE's products; made once per build)."""
    lib, (wt, bias), products = native
    outs, full = empty_fields(1, grid.size, x.shape[0]), empty_fields(1, x.shape[0])
    order = np.arange(grid.size)[::-1].copy()  # walk from the largest p to the smallest
    if strategy == "clip":
        head, extra, counts, thr = (wt, bias), None, None, clips[order].astype(np.float32)
    else:
        head, extra = (None, bias), products
        counts = np.asarray([kept_count(x.shape[1], p) for p in grid], np.int32)[order]
        thr = None
    _native.run_native(lib, x, extra, head, counts, thr, order, np.zeros(1, np.int32), outs,
                       full, threads=threads, block=block, progress=tick, kind=strategy)
    return SplitCube(*(o[0] for o in outs)), SplitCube(*full)


def _native_inputs(sel: Selection, strategy: str) -> tuple:
    """The loaded kernel, the tiled head and SCALE's dense products (padded to the tile)."""
    tile = _native.choose_tile(sel.weight.shape[0])
    products = _native.padded_products(sel.weight, tile) if strategy == "row-scale" else None
    return _kernel.load_kernel(tile), _native.tiled_head(sel.weight, sel.bias, tile), products


def build_strategy(strategy: str, sel: Selection, grid: np.ndarray, chunk: int | None,
                   tick: Tick, backend: str = "torch", block: int = 4096, threads: int = 1,
                   ) -> tuple[dict[str, SplitCube], dict[str, SplitCube], np.ndarray | None]:
    """(cube per split, unshaped per split, fitted clips or None) for "clip" / "row-scale"
    on ``backend`` ("native": ``block`` rows at a time on ``threads`` threads; "torch":
    ``chunk`` rows at a time, None = the device's default)."""
    chunk = chunk or chunk_rows(sel.device)
    clips = fit_cutoffs(sel, grid, "ReAct's clip") if strategy == "clip" else None
    native = _native_inputs(sel, strategy) if backend == "native" else None
    cubes, unshaped = {}, {}
    for nm in sel.split_names:
        x = sel.features(nm).numpy()
        if native is not None:
            cubes[nm], unshaped[nm] = _native_split_cube(strategy, x, grid, clips, native,
                                                         block, threads, tick)
        else:
            cubes[nm], unshaped[nm] = _split_cube(strategy, x, sel, grid, clips, chunk, tick)
    return cubes, unshaped, clips
