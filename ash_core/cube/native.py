"""Glue between the score cube and the native kernel: the tiled head and the threaded calls.

One kernel entry point per grid strategy (``KINDS``): ``ash_cube_rows`` ("prefix": the
ASH variants), ``ash_clip_rows`` ("clip": ReAct) and ``ash_scale_rows`` ("row-scale":
SCALE, fed the rows' dense products ``x W^T`` block by block). Rows go in blocks (in
order, so ASH-RAND's draws can be made block by block); each block is
split across Python threads, and ``ctypes`` releases the GIL while the kernel runs on a
row range.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

KINDS = ("prefix", "clip", "row-scale")


def choose_tile(num_classes: int) -> int:
    """Class-tile width: 16 for small heads (CIFAR-10), 64 otherwise."""
    return 16 if num_classes <= 16 else 64


def tiled_head(weight: torch.Tensor, bias: torch.Tensor, tile: int) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """W [C, D] -> [Cp/tile, D, tile] fp32 (zero padded); bias -> [Cp] (-inf padded)."""
    c, d = weight.shape
    cp = -(-c // tile) * tile
    wt = np.zeros((cp, d), dtype=np.float32)
    wt[:c] = weight.numpy()
    tiled = np.ascontiguousarray(wt.reshape(cp // tile, tile, d).transpose(0, 2, 1))
    b = np.full(cp, -np.inf, dtype=np.float32)
    b[:c] = bias.numpy()
    return tiled, b


def padded_products(weight: torch.Tensor, tile: int) -> Callable[[np.ndarray], np.ndarray]:
    """``rows -> rows @ W.T`` as fp32 ``[rows, Cp]`` (one dense GEMM through torch, zero
    columns padding C to the tile width): what ``ash_scale_rows`` scales per grid point."""
    c, d = weight.shape
    padded = torch.zeros((-(-c // tile) * tile, d), dtype=torch.float32)
    padded[:c] = weight
    wt = padded.T

    def products(rows: np.ndarray) -> np.ndarray:
        return torch.from_numpy(rows).mm(wt).numpy()

    return products


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


@dataclass
class _Call:
    """The arguments of ``ash_cube_rows`` that are the same for every row range."""

    lib: ctypes.CDLL
    kind: str
    n: int
    d: int
    head: tuple[np.ndarray, np.ndarray]
    mode: int
    counts: np.ndarray
    cutoffs: np.ndarray
    slots: np.ndarray
    jmap: np.ndarray
    outs: tuple[np.ndarray, ...]
    full_ptrs: ctypes.Array | None

    def rows(self, lo: int, hi: int, xb: np.ndarray, db: np.ndarray | None) -> None:
        """Run the kernel on rows ``lo:hi`` (``xb`` their features, ``db`` their block
        extra: ASH-RAND's draws, or SCALE's dense products)."""
        wt, bias = self.head
        outs = tuple(_ptr(a) for a in self.outs)
        if self.kind == "prefix":
            rc = self.lib.ash_cube_rows(
                lo, hi, self.n, self.d, bias.shape[0], _ptr(xb), _ptr(db), _ptr(wt),
                _ptr(bias), len(self.jmap), self.mode, _ptr(self.counts),
                _ptr(self.cutoffs), _ptr(self.slots), _ptr(self.jmap), *outs,
                self.full_ptrs)
        else:
            fn, second, table = ((self.lib.ash_clip_rows, wt, self.cutoffs)
                                  if self.kind == "clip"
                                  else (self.lib.ash_scale_rows, db, self.counts))
            rc = fn(lo, hi, self.n, self.d, bias.shape[0], _ptr(xb), _ptr(second), _ptr(bias),
                    len(self.jmap), _ptr(table), _ptr(self.jmap), *outs, self.full_ptrs)
        if rc != 0:
            raise MemoryError("score-cube kernel could not allocate its row buffers")


def _prepare_call(lib, kind, x, head, counts, cutoffs, jmap, slots, outs, full) -> _Call:
    """Contiguous argument arrays, checked outputs and the pointers of ``full``."""
    for a in (*outs, *(full or ())):
        if not a.flags.c_contiguous:
            raise ValueError("kernel outputs must be C-contiguous")
    full_ptrs = None if full is None else (ctypes.c_void_p * 4)(*(a.ctypes.data for a in full))
    if kind not in KINDS:
        raise ValueError(f"unknown kernel kind {kind!r}")
    return _Call(
        lib=lib, kind=kind, n=x.shape[0], d=x.shape[1], head=head, mode=0 if counts is not None else 1,
        counts=np.ascontiguousarray(counts if counts is not None else np.zeros(1), np.int32),
        cutoffs=np.ascontiguousarray(cutoffs if cutoffs is not None else np.zeros(1),
                                     np.float32),
        slots=np.ascontiguousarray(slots, np.int32), jmap=np.ascontiguousarray(jmap, np.int32),
        outs=outs, full_ptrs=full_ptrs)


def _run_block(call: _Call, pool: ThreadPoolExecutor | None, xblock: np.ndarray, b0: int,
               db: np.ndarray | None, threads: int) -> None:
    """Rows ``b0:b0 + len(xblock)`` split into ``threads`` ranges, in parallel when a pool
    is given."""
    b1 = b0 + xblock.shape[0]
    step = -(-(b1 - b0) // max(1, threads))
    jobs = []
    for lo in range(b0, b1, step):
        hi = min(b1, lo + step)
        xb = xblock[lo - b0:hi - b0]
        sub = None if db is None else db[lo - b0:hi - b0]
        if pool is None:
            call.rows(lo, hi, xb, sub)
        else:
            jobs.append(pool.submit(call.rows, lo, hi, xb, sub))
    for job in jobs:
        job.result()


def run_native(
    lib: ctypes.CDLL,
    x: np.ndarray,
    extra: Callable[[np.ndarray], np.ndarray] | None,
    head: tuple[np.ndarray, np.ndarray],
    counts: np.ndarray | None,
    cutoffs: np.ndarray | None,
    jmap: np.ndarray,
    slots: np.ndarray,
    outs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    full: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
    threads: int,
    block: int = 4096,
    progress: Callable[[int], None] | None = None,
    kind: str = "prefix",
) -> None:
    """Fill ``outs`` ([nslot, J, N] energy/gap/maxlogit/pred) and ``full`` for all rows
    with the entry point of ``kind`` (``KINDS``).

    Rows go in blocks of ``block``, in order; ``extra(block_rows)`` gives each block's
    second input (ASH-RAND's draws of those rows; SCALE's dense
    products), or None. Each block is split across ``threads`` Python threads.
    """
    call = _prepare_call(lib, kind, x, head, counts, cutoffs, jmap, slots, outs, full)
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        for b0 in range(0, x.shape[0], block):
            xblock = np.ascontiguousarray(x[b0:b0 + block], np.float32)
            db = None if extra is None else np.ascontiguousarray(extra(xblock), np.float32)
            _run_block(call, pool, xblock, b0, db, threads)
            if progress:
                progress(xblock.shape[0])
    finally:
        if pool is not None:
            pool.shutdown()
