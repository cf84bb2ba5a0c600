"""The pure-torch backend of the score cube: band sparse products accumulated as prefix sums.

Exact like the native kernel (fp32 logits, torch's own score functions), several times
slower on the CPU; used when no C compiler is available, the backend "torch" is asked
for, or the device is CUDA (the same code on any ``torch.device``: rows go to the device
chunk by chunk, scores come back once per chunk). Per chunk of rows: sort each row once,
count the survivors of every grid point, then walk the grid from the largest p (fewest
survivors) to the smallest, adding each rank band's contribution to the running sums and
scoring the shaped logits of every variant.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ash_core.cube.model import FIELD_DTYPES
from ash_core.maths.scores import energy_score, maxlogit_score


def gap_score(logits: torch.Tensor) -> torch.Tensor:
    """logsumexp - max logit = log1p(sum of exp(x - max) over all but one argmax), in
    float64 (stored as float32; MSP = exp(-gap)).

    Not ``logsumexp - max``: that difference keeps only the absolute resolution of the
    max (5.7e-14 at a logit of 400), so large shaped logits (SCALE, ASH-S) turned MSPs that
    ``scores.msp_score`` still tells apart into ties at exactly 1.0.
    """
    lg = logits.to(torch.float64)
    e = torch.exp(lg - lg.amax(dim=1, keepdim=True))
    e.scatter_(1, lg.argmax(dim=1, keepdim=True), 0.0)
    return torch.log1p(e.sum(dim=1)).to(torch.float32)


#: The score fields in ``model.FIELDS`` order (pred, the last field, is the argmax).
SCORE_FNS = (energy_score, gap_score, maxlogit_score)
#: Rows per chunk: small on the CPU (cache-sized), large on CUDA (fewer kernel launches).
CHUNK_ROWS = {"cpu": 1024, "cuda": 16384}


def chunk_rows(device: torch.device) -> int:
    return CHUNK_ROWS.get(device.type, CHUNK_ROWS["cpu"])


def device_fields(variants: int, points: int, rows: int,
                  device: torch.device) -> tuple[torch.Tensor, ...]:
    """One chunk's fields ``[variant, P, rows]`` on ``device``, in ``model.FIELDS`` order."""
    return tuple(torch.empty((variants, points, rows), device=device,
                             dtype=torch.from_numpy(np.empty(0, dt)).dtype)
                 for dt in FIELD_DTYPES.values())


def copy_out(bufs: tuple[torch.Tensor, ...], outs: tuple[np.ndarray, ...], lo: int) -> None:
    """A chunk's device fields into ``outs[field][:, :, lo:lo + rows]`` (one copy each)."""
    for buf, out in zip(bufs, outs, strict=True):
        out[:, :, lo:lo + buf.shape[2]] = buf.cpu().numpy()


@dataclass
class Chunk:
    """One chunk of rows, sorted: values, unit order, draws at the ranks, s1, counts."""

    vals: torch.Tensor
    order: torch.Tensor
    draws: torch.Tensor | None
    s1: torch.Tensor
    kept: torch.Tensor  # [m, P] survivor count of every grid point


def prepare_chunk(rows: torch.Tensor, draws: Callable[[int], np.ndarray] | None,
             counts: np.ndarray | None, thr32: torch.Tensor | None) -> Chunk:
    """Sort the rows once and count the survivors of every grid point."""
    m, dev = rows.shape[0], rows.device
    vals, order = torch.sort(rows, dim=1, descending=True, stable=True)
    u = None if draws is None else torch.gather(torch.from_numpy(draws(m)).to(dev), 1, order)
    if thr32 is None:
        kept = torch.from_numpy(counts.astype(np.int64)).to(dev)[None, :].expand(m, -1)
    else:  # survivors: values > t, i.e. -values < -t in the ascending -values
        kept = torch.searchsorted((-vals).contiguous(),
                                  (-thr32)[None, :].expand(m, -1).contiguous(), side="left")
    return Chunk(vals, order, u, rows.sum(dim=1), kept)


def band_product(ch: Chunk, band: torch.Tensor, values: torch.Tensor,
                  wt: torch.Tensor) -> torch.Tensor:
    """``sum over the band's ranks of value x W[:, unit]`` per row, as one CSR product."""
    m, d = ch.vals.shape
    crow = torch.cat([torch.zeros(1, dtype=torch.int64, device=band.device),
                      torch.cumsum(band.sum(dim=1), 0)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "beta" / invariants
        return torch.sparse_csr_tensor(crow, ch.order[band], values, (m, d)) @ wt


def _shaped_logits(variants: list[str], ch: Chunk, k: torch.Tensor,
                   sums: dict[str, torch.Tensor], bias: torch.Tensor) -> dict[str, torch.Tensor]:
    """Logits of every variant at prefix lengths ``k`` from the running sums."""
    ranks = torch.arange(ch.vals.shape[1], device=k.device)
    out = {}
    if "ash-p" in variants:
        out["ash-p"] = sums["a"] + bias
    if "ash-s" in variants:
        s2 = torch.where(ranks[None, :] < k[:, None], ch.vals, ch.vals.new_zeros(())).sum(dim=1)
        safe = torch.where(s2 != 0, s2, torch.ones_like(s2))
        f = torch.exp(torch.where(s2 != 0, ch.s1 / safe, torch.zeros_like(ch.s1)))
        out["ash-s"] = f[:, None] * sums["a"] + bias
    if "ash-b" in variants:
        kf = k.to(torch.float32)
        fill = torch.where(kf > 0, ch.s1 / kf.clamp_min(1.0), torch.zeros_like(ch.s1))
        out["ash-b"] = fill[:, None] * sums["g"] + bias
    if "ash-rand" in variants:
        out["ash-rand"] = sums["r"] + bias
    return out


def store_scores(bufs: tuple[torch.Tensor, ...], i: int, j: int,
                 logits: torch.Tensor) -> None:
    """Scores and argmax of ``logits`` into the device fields ``bufs[field][i, j]``."""
    for f_i, fn in enumerate(SCORE_FNS):
        bufs[f_i][i, j] = fn(logits)
    bufs[3][i, j] = logits.argmax(dim=1)


def store_unshaped(full: tuple[np.ndarray, ...], lo: int, logits: torch.Tensor) -> None:
    """Scores and argmax of a chunk's unshaped ``logits`` into ``full[field][0, lo:]``."""
    bufs = device_fields(1, 1, logits.shape[0], logits.device)
    store_scores(bufs, 0, 0, logits)
    copy_out(bufs, tuple(a[None] for a in full), lo)


def _walk_grid(ch: Chunk, wt: torch.Tensor, bias: torch.Tensor, variants: list[str],
               bufs: tuple[torch.Tensor, ...]) -> None:
    """From the largest p to the smallest: add each band to the running sums, score."""
    m, d = ch.vals.shape
    ranks = torch.arange(d, device=wt.device)
    sums = {name: wt.new_zeros(m, wt.shape[1]) for name in ("a", "g", "r")}
    prev = torch.zeros(m, dtype=torch.int64, device=wt.device)
    for j in range(ch.kept.shape[1] - 1, -1, -1):
        k = ch.kept[:, j]
        band = (ranks[None, :] >= prev[:, None]) & (ranks[None, :] < k[:, None])
        nnz = int(band.sum())
        if nnz:
            sums["a"] += band_product(ch, band, ch.vals[band], wt)
            if "ash-b" in variants:
                sums["g"] += band_product(ch, band, wt.new_ones(nnz), wt)
            if ch.draws is not None:
                sums["r"] += band_product(ch, band, ch.draws[band], wt)
        prev = k
        for v, lg in _shaped_logits(variants, ch, k, sums, bias).items():
            store_scores(bufs, variants.index(v), j, lg)


def run_torch(x: np.ndarray, draws: Callable[[int], np.ndarray] | None, weight: torch.Tensor,
              bias: torch.Tensor, counts: np.ndarray | None, cutoffs: np.ndarray | None,
              variants: list[str], outs: tuple[np.ndarray, ...], full: tuple[np.ndarray, ...],
              progress: Callable[[int], None] | None, chunk: int | None = None,
              device: torch.device | None = None) -> None:
    """Fill ``outs`` (``[variant, P, N]`` per field) and ``full`` (unshaped, ``[1, N]``),
    computing on ``device`` (default the CPU) in chunks of ``chunk`` rows."""
    device = device or torch.device("cpu")
    chunk = chunk or chunk_rows(device)
    weight, bias = weight.to(device), bias.to(device)
    wt = weight.T.contiguous()
    thr32 = (None if cutoffs is None
             else torch.from_numpy(cutoffs.astype(np.float32)).to(device))
    for lo in range(0, x.shape[0], chunk):
        rows = torch.from_numpy(np.ascontiguousarray(x[lo:lo + chunk])).to(device)
        bufs = device_fields(len(variants), outs[0].shape[1], rows.shape[0], device)
        _walk_grid(prepare_chunk(rows, draws, counts, thr32), wt, bias, variants, bufs)
        copy_out(bufs, outs, lo)
        store_unshaped(full, lo, torch.addmm(bias, rows, weight.T))  # as Evaluator.logits
        if progress:
            progress(rows.shape[0])
