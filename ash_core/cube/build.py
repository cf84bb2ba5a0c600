"""Building score cubes (no cache): every grid p of several ASH variants in one pass per split.

Each row is sorted once (stable, descending); the survivors of every p, local or global
thresholds, are a prefix of that order. The shaped logits of ASH-P are running sums of
value x weight column along the order, ASH-S the same times exp(s1/s2(k)), ASH-B running
sums of the weight columns times s1/k, ASH-RAND running sums of draw x weight column.
The *backend* computes them: the native C kernel (``kernel.c``, all variants in one pass,
tile by tile of classes, scores reduced on the fly) or the pure-torch fallback. On a CUDA
``Selection.device`` the torch backend runs there; the native kernel is the CPU path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from ash_core.cube import kernel as _kernel
from ash_core.cube import native as _native
from ash_core.cube.model import (
    CUBE_METHODS,
    CUBE_STRATEGIES,
    ScoreCube,
    SplitCube,
    empty_fields,
    grid_strategy,
    is_cube_method,
)
from ash_core.cube.strategies import build_strategy
from ash_core.cube.thresholds import fit_cutoffs, normalize_grid
from ash_core.cube.torch_backend import run_torch
from ash_core.device import is_cuda
from ash_core.engine.store import Selection
from ash_core.errors import ParameterError
from ash_core.maths.draws import HIGH, LOW, row_draws
from ash_core.maths.shaping import kept_count
from ash_core.methods import check_seed, check_threshold_mode, get_method

RAND_LOW, RAND_HIGH = LOW, HIGH
#: Rows per native block (draws for ASH-RAND are made block by block); torch chunks:
#: ``None`` = the device's default (``torch_backend.CHUNK_ROWS``).
BLOCK_ROWS = 4096
TORCH_CHUNK: int | None = None
BACKENDS = ("auto", "native", "torch")

Progress = Callable[[int, int], None]


def cube_threads() -> int:
    """Threads for the native kernel: ``ASH_CUBE_THREADS``, else torch's intra-op count."""
    env = os.environ.get("ASH_CUBE_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ParameterError(f"ASH_CUBE_THREADS must be an integer, got {env!r}.") from None
    return max(1, torch.get_num_threads())


def choose_backend(num_classes: int, backend: str = "auto",
                   device: torch.device | None = None) -> str:
    """'native' or 'torch' (``auto``: torch on CUDA; on the CPU native when the C kernel
    builds, else torch). ``native`` on a CUDA device is an error (the kernel is CPU code)."""
    if backend not in BACKENDS:
        raise ParameterError(f"unknown cube backend {backend!r}; use auto, native or torch.")
    on_gpu = device is not None and is_cuda(device)
    if backend == "native" and on_gpu:
        raise ParameterError("the native cube kernel runs on the CPU only; use backend='torch' "
                             "or 'auto' on CUDA, or device 'cpu' for the native kernel.")
    if backend == "torch" or on_gpu:
        return "torch"
    ok = _kernel.load_kernel(_native.choose_tile(num_classes)) is not None
    if backend == "native" and not ok:
        raise ParameterError(
            f"the native cube kernel is unavailable: {_kernel.kernel_status()}; use "
            "backend='torch' or 'auto'."
        )
    return "native" if ok else "torch"


def _draw_stream(seed: int, split: str, dim: int) -> Callable[[int], np.ndarray]:
    """``take(rows)``: the draws of a split's next ``rows`` rows, from row 0 on (the
    backends ask for the blocks in order); row i's are those ``shaping.ash_rand`` gives
    row i of ``split`` (``ash_core.maths.draws``)."""
    start = 0

    def take(rows: int) -> np.ndarray:
        nonlocal start
        out = row_draws(int(seed), split, start, rows, dim, RAND_LOW, RAND_HIGH)
        start += rows
        return out

    return take


def native_head(sel: Selection) -> tuple[np.ndarray, np.ndarray]:
    """The head tiled for the kernel: made once per build (8 MiB at ImageNet shapes, ~12 ms:
    made per split, it would be a fixed cost that weighs on small bundles)."""
    return _native.tiled_head(sel.weight, sel.bias, _native.choose_tile(sel.weight.shape[0]))


def _run_native(x, draws, head, grid, counts, cutoffs, variants, outs, full,
                progress) -> None:
    tile = head[0].shape[2]
    lib = _kernel.load_kernel(tile)
    if lib is None:
        raise ParameterError(f"the native cube kernel is unavailable: {_kernel.kernel_status()}.")
    slots = np.full(len(CUBE_METHODS), -1, np.int32)
    for i, v in enumerate(variants):
        slots[CUBE_METHODS[v]] = i
    # checkpoints go from the largest p (fewest survivors) to the smallest
    order = np.arange(grid.size)[::-1].copy()
    _native.run_native(
        lib, x, None if draws is None else (lambda xb: draws(xb.shape[0])), head,
        None if counts is None else counts[order],
        None if cutoffs is None else cutoffs[order].astype(np.float32),
        order, slots, outs, full, threads=cube_threads(), block=BLOCK_ROWS, progress=progress,
    )


def _run_split(x: np.ndarray, name: str, sel: Selection, grid: np.ndarray,
               counts: np.ndarray | None, cutoffs: np.ndarray | None, variants: list[str],
               seed: int,
               head: tuple[np.ndarray, np.ndarray] | None,
               progress: Callable[[int], None] | None,
               ) -> tuple[dict[str, SplitCube], SplitCube]:
    """Cube of one split for several variants, plus its unshaped scores (on the native
    kernel with its tiled ``head``, or on torch where ``head`` is None)."""
    n = x.shape[0]
    outs = empty_fields(len(variants), grid.size, n)
    full = empty_fields(1, n)
    draws = _draw_stream(seed, name, x.shape[1]) if "ash-rand" in variants else None
    if head is not None:
        _run_native(x, draws, head, grid, counts, cutoffs, variants, outs, full, progress)
    else:
        run_torch(x, draws, sel.weight, sel.bias, counts, cutoffs, variants, outs, full,
                  progress, chunk=TORCH_CHUNK, device=sel.device)
    cubes = {v: SplitCube(*(o[i] for o in outs)) for i, v in enumerate(variants)}
    return cubes, SplitCube(*full)


def check_request(sel: Selection, methods: Sequence[str], threshold_mode: str) -> list[str]:
    """The de-duplicated methods, each a cube method supporting ``threshold_mode``."""
    methods = list(dict.fromkeys(methods))
    for m in methods:
        spec = get_method(m)  # unknown names: a clear "unknown method" error
        if not is_cube_method(m):
            raise ParameterError(
                f"{m!r} is not computed by the score cube (it covers "
                f"{', '.join(CUBE_STRATEGIES)}); evaluate it with Evaluator."
            )
        check_threshold_mode(spec, threshold_mode)
    if not methods:
        raise ParameterError("no methods to build a cube for.")
    if not sel.ood_names:
        raise ParameterError(
            f"bundle {sel.bundle.name} has no OOD split selected; select at least one."
        )
    return methods


def _row_counter(sel: Selection, passes: int, progress: Progress | None
                 ) -> Callable[[int], None]:
    """``tick(rows)`` reporting ``progress(done, total)`` over every split's rows, per pass."""
    total = passes * sum(len(sel.bundle.split(nm)) for nm in sel.split_names)
    done = 0

    def tick(rows: int) -> None:
        nonlocal done
        done += rows
        if progress:
            progress(done, total)

    return tick


def _build_prefix(sel: Selection, methods: list[str], g: np.ndarray, threshold_mode: str, seed: int,
                  backend: str, tick: Callable[[int], None]) -> dict[str, ScoreCube]:
    """The ASH variants ("prefix" strategy): one pass per split through the backend."""
    chosen = choose_backend(sel.weight.shape[0], backend, sel.device)
    counts = cutoffs = None
    if threshold_mode == "local":
        counts = np.asarray([kept_count(sel.bundle.dim, p) for p in g], dtype=np.int32)
    else:
        cutoffs = fit_cutoffs(sel, g)
    head = native_head(sel) if chosen == "native" else None
    per_split, unshaped = {}, {}
    for nm in sel.split_names:
        per_split[nm], unshaped[nm] = _run_split(
            sel.features(nm).numpy(), nm, sel, g, counts, cutoffs, methods, seed, head, tick)
    return {m: _cube(sel, m, threshold_mode, g, seed if m == "ash-rand" else 0,
                     {nm: per_split[nm][m] for nm in sel.split_names}, unshaped, cutoffs,
                     chosen)
            for m in methods}


def _cube(sel: Selection, method: str, threshold_mode: str, g: np.ndarray, seed: int,
          splits: dict[str, SplitCube], unshaped: dict[str, SplitCube],
          fitted: np.ndarray | None, backend: str) -> ScoreCube:
    labels = sel.bundle.id_split.labels
    return ScoreCube(
        method=method, threshold_mode=threshold_mode, grid=g, seed=int(seed),
        bundle_hash=sel.bundle.content_hash, bundle_name=sel.bundle.name, id_name=sel.id_name,
        ood_names=list(sel.ood_names), splits=splits, unshaped=unshaped,
        labels=None if labels is None else np.asarray(labels, dtype=np.int64),
        cutoffs=fitted, backend=backend,
    )


def build_cubes(
    sel: Selection,
    methods: Sequence[str],
    grid: Iterable[float],
    threshold_mode: str = "local",
    seed: int = 0,
    backend: str = "auto",
    progress: Progress | None = None,
) -> dict[str, ScoreCube]:
    """Compute the cubes of several methods (no cache): the ASH variants together in one
    pass per split, ReAct and SCALE in one pass each (``strategies``), all on ``backend``."""
    seed = check_seed(seed)
    methods = check_request(sel, methods, threshold_mode)
    g = normalize_grid(grid)
    prefix = [m for m in methods if grid_strategy(m) == "prefix"]
    others = [m for m in methods if grid_strategy(m) != "prefix"]
    tick = _row_counter(sel, bool(prefix) + len(others), progress)
    out = _build_prefix(sel, prefix, g, threshold_mode, seed, backend, tick) if prefix else {}
    for m in others:
        chosen = choose_backend(sel.weight.shape[0], backend, sel.device)
        splits, unshaped, fitted = build_strategy(grid_strategy(m), sel, g, TORCH_CHUNK, tick,
                                                  chosen, BLOCK_ROWS, cube_threads())
        out[m] = _cube(sel, m, threshold_mode, g, 0, splits, unshaped, fitted, chosen)
    return {m: out[m] for m in methods}
