"""Small descriptive statistics of features and results, for captions and checks.

``row_zero_counts`` is computed once per split; ``zero_share`` and
``share_pruning_only_zeros`` then answer per p without touching the features again.
``max_abs_difference`` compares two results (e.g. a score-cube lookup against the
exact evaluation) over every number they both report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ash_core.maths.shaping import kept_count

#: rows compared at a time (a 16 MB mask at D = 2048)
ZERO_COUNT_ROWS = 8192


def row_zero_counts(features: np.ndarray) -> np.ndarray:
    """Number of exact zeros in each row of ``[N, D]`` features (int64, length N)."""
    arr = np.asarray(features)
    if arr.ndim != 2:
        arr = arr.reshape(arr.shape[0], -1)
    out = np.empty(arr.shape[0], dtype=np.int64)
    for i in range(0, arr.shape[0], ZERO_COUNT_ROWS):  # no [N, D] mask at once
        out[i:i + ZERO_COUNT_ROWS] = (arr[i:i + ZERO_COUNT_ROWS] == 0).sum(axis=1)
    return out


def zero_share(zero_counts: np.ndarray, dim: int) -> float:
    """Share of all activations that are exactly zero (0.0 for an empty split)."""
    counts = np.asarray(zero_counts)
    return float(counts.sum() / (counts.size * dim)) if counts.size and dim else 0.0


def share_pruning_only_zeros(zero_counts: np.ndarray, dim: int, p: float) -> float:
    """Share of rows whose pruned units (``D - k`` at percentile ``p``, local thresholds)
    are all exact zeros: the row has at least ``D - k`` zeros, so ASH removes nothing else.

    Ties among zeros are broken by unit index but every tie is zero, so the count decides.
    """
    counts = np.asarray(zero_counts)
    pruned = dim - kept_count(dim, p)
    if pruned == 0 or counts.size == 0:
        return 0.0
    return float((counts >= pruned).mean())


def _numbers(tree: Any, prefix: str = "") -> dict[str, float]:
    if isinstance(tree, Mapping):
        out: dict[str, float] = {}
        for k, v in tree.items():
            out.update(_numbers(v, f"{prefix}/{k}" if prefix else str(k)))
        return out
    if isinstance(tree, (int, float, np.floating, np.integer)) and not isinstance(tree, bool):
        return {prefix: float(tree)}
    return {}


def max_abs_difference(a: Mapping[str, Any], b: Mapping[str, Any],
                       keys: tuple[str, ...] = ("ood", "average", "id_accuracy")
                       ) -> tuple[float, int]:
    """(max |a - b|, how many numbers were compared) over the numeric leaves under ``keys``
    that both nested dicts hold (e.g. two ``EvalResult.to_dict()``)."""
    na = _numbers({k: a.get(k) for k in keys})
    nb = _numbers({k: b.get(k) for k in keys})
    common = [k for k in na if k in nb]
    if not common:
        return 0.0, 0
    return max(abs(na[k] - nb[k]) for k in common), len(common)
