"""The p grid and the global thresholds of every grid p, bit for bit as the shaper fits them."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ash_core.engine.store import Selection
from ash_core.errors import FeatureError, ParameterError
from ash_core.maths.shaping import check_percentile


def normalize_grid(grid: Iterable[float]) -> np.ndarray:
    """Validated, sorted, de-duplicated grid (float64)."""
    values = sorted({round(check_percentile(p), 10) for p in grid})
    if not values:
        raise ParameterError("the p grid is empty.")
    return np.asarray(values, dtype=np.float64)


def percentiles(values: np.ndarray, grid: Iterable[float]) -> np.ndarray:
    """``[shaping.percentile_of(values, p) for p in grid]``, bit for bit, with one partition.

    ``np.percentile`` with a Python-float ``q`` interpolates in the array's dtype
    (float32 here), while an array of q interpolates in float64; the global
    thresholds must equal the per-p ones exactly, so the float32 linear
    interpolation is replicated from the order statistics of a single partition.
    """
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    n = flat.size
    if n == 0:
        raise FeatureError("cannot fit a threshold on an empty set of activations.")
    qs = [float(check_percentile(p)) / 100.0 for p in grid]
    vis = [n * q + (1.0 - q) - 1.0 for q in qs]
    lows = [n - 1 if vi >= n - 1 else int(np.floor(vi)) for vi in vis]
    highs = [n - 1 if vi >= n - 1 else lo + 1 for vi, lo in zip(vis, lows, strict=True)]
    part = np.partition(flat, np.unique(np.asarray(lows + highs, dtype=np.intp)))
    out = np.empty(len(qs), dtype=np.float64)
    for i, (vi, lo, hi) in enumerate(zip(vis, lows, highs, strict=True)):
        a, b = part[lo], part[hi]
        gamma = float(vi - np.floor(vi)) if vi < n - 1 else 0.0
        diff = b - a
        res = a + diff * np.float32(gamma)
        if gamma >= 0.5:
            res = b - diff * np.float32(1.0 - gamma)
        out[i] = float(res)
    return out


def fit_cutoffs(sel: Selection, grid: np.ndarray,
                          purpose: str = "threshold='global'") -> np.ndarray:
    """Global thresholds (or ReAct clips) for every grid p: the p-th percentiles of id_fit
    activations, as the shaper fits them."""
    fit = sel.bundle.id_fit
    if fit is None:
        raise ParameterError(
            f"{purpose} needs an 'id_fit' split (ID training features) and bundle "
            f"{sel.bundle.name} has none; use threshold='local' (ASH) or re-extract with id_fit."
        )
    return percentiles(sel.features(fit.name).numpy(), grid)
