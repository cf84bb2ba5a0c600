"""The Pareto front of points in two objectives (a pure function, no pandas).

A point dominates another when it is at least as good in both objectives and strictly
better in one. The front is every point no other point dominates: exact duplicates are
both on it (neither is strictly better), a point that ties another in one objective and
loses in the other is not. NaN points are never on the front and never dominate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pareto_mask(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                maximize_x: bool = True, maximize_y: bool = True) -> np.ndarray:
    """A boolean array: True where point i is on the Pareto front of (x, y).

    ``maximize_x``/``maximize_y`` say the direction of each objective (ID accuracy and
    AUROC are maximised, FPR95 is minimised). O(n log n): points are visited by x from
    best to worst, a group of equal x at a time; a point is on the front when it has its
    group's best y and that y beats every y of a strictly better x.
    """
    xs = np.asarray(x, dtype=float) * (1.0 if maximize_x else -1.0)
    ys = np.asarray(y, dtype=float) * (1.0 if maximize_y else -1.0)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"x and y must be 1-d and of one length, got {xs.shape} and "
                         f"{ys.shape}")
    mask = np.zeros(xs.shape, dtype=bool)
    ok = np.flatnonzero(np.isfinite(xs) & np.isfinite(ys))
    order = ok[np.lexsort((-ys[ok], -xs[ok]))]  # best x first, then best y
    best_y, i = -np.inf, 0
    while i < len(order):
        j = i
        while j < len(order) and xs[order[j]] == xs[order[i]]:
            j += 1
        group_best = ys[order[i]]
        if group_best > best_y:
            group = order[i:j]
            mask[group[ys[group] == group_best]] = True
            best_y = group_best
        i = j
    return mask
