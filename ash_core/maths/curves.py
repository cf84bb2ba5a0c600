"""Plot-ready curve data: ROC/PR points (thinned), density histograms, the TPR-95 threshold.

Pure functions returning plain numpy data, shared by the dashboard's figures and
reports. Everything is computed server-side so that a plot of hundreds of
thousands of samples ships a few hundred points to the browser.

Conventions match :mod:`ash_core.maths.metrics`: scores are "higher = more ID"; with
``positive="id"`` the ROC curve is (FPR = OOD accepted, TPR = ID accepted), with
``positive="ood"`` it is (FPR = ID flagged, TPR = OOD flagged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ash_core.errors import ParameterError
from ash_core.maths.metrics import _as_scores, _descending_curve

#: Default cap on the number of points a curve is thinned to.
MAX_CURVE_POINTS = 400


@dataclass(frozen=True)
class Curve:
    """x/y points of a curve (thinned) and the area-like summary it was drawn for."""

    x: np.ndarray
    y: np.ndarray
    n_full: int

    def __len__(self) -> int:
        return int(self.x.size)


@dataclass(frozen=True)
class Histogram:
    """Shared bin edges and a density per named score set (each integrates to 1)."""

    edges: np.ndarray
    densities: dict[str, np.ndarray]
    counts: dict[str, int]
    #: per set, (values below the first edge, values above the last): they are counted
    #: in the edge bins, and a plot should say so
    outside: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def centers(self) -> np.ndarray:
        return (self.edges[:-1] + self.edges[1:]) / 2.0

    @property
    def widths(self) -> np.ndarray:
        return np.diff(self.edges)


def _check_positive(positive: str) -> str:
    if positive not in ("id", "ood"):
        raise ParameterError(f"positive must be 'id' or 'ood', got {positive!r}.")
    return positive


def thin_curve(x: np.ndarray, y: np.ndarray, max_points: int = MAX_CURVE_POINTS) -> np.ndarray:
    """Indices of a monotone curve's points to keep so that at most ~``max_points`` remain.

    A point is kept when it enters a new cell of a ``max_points/2`` grid over the unit
    square (x and y both in [0, 1]); the first and last points are always kept. The
    shape is preserved to within one cell, which is invisible at plot resolution.
    """
    n = int(np.asarray(x).size)
    if n <= max_points:
        return np.arange(n)
    cells = max(2, max_points // 2)
    cx = np.floor(np.clip(x, 0, 1) * cells).astype(np.int64)
    cy = np.floor(np.clip(y, 0, 1) * cells).astype(np.int64)
    key = cx * (cells + 1) + cy
    change = np.flatnonzero(np.diff(key) != 0) + 1
    keep = np.unique(np.concatenate([[0], change, change - 1, [n - 1]]))
    if keep.size > max_points:  # pathological zig-zags: fall back to even spacing
        keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
    return keep


Scores = np.ndarray | torch.Tensor | Sequence[float]


def _labels(id_scores: Scores, ood_scores: Scores,
            positive: str) -> tuple[np.ndarray, np.ndarray]:
    ind = _as_scores(id_scores, "ID")
    ood = _as_scores(ood_scores, "OOD")
    scores = np.concatenate([ind, ood])
    is_id = np.concatenate([np.ones(ind.size, dtype=bool), np.zeros(ood.size, dtype=bool)])
    if positive == "id":
        return scores, is_id
    return -scores, ~is_id


def roc_curve(id_scores: Scores, ood_scores: Scores, positive: str = "id",
              max_points: int = MAX_CURVE_POINTS) -> Curve:
    """ROC points (x = FPR, y = TPR, fractions), starting at (0, 0), thinned."""
    scores, pos = _labels(id_scores, ood_scores, _check_positive(positive))
    tps, fps = _descending_curve(scores, pos)
    tpr = np.concatenate([[0.0], tps / tps[-1]])
    fpr = np.concatenate([[0.0], fps / fps[-1]])
    keep = thin_curve(fpr, tpr, max_points)
    return Curve(fpr[keep], tpr[keep], int(fpr.size))


def pr_curve(id_scores: Scores, ood_scores: Scores, positive: str = "id",
             max_points: int = MAX_CURVE_POINTS) -> Curve:
    """Precision-recall points (x = recall, y = precision, fractions), thinned.

    ``positive="id"`` is the AUPR-In curve, ``"ood"`` the AUPR-Out curve.
    """
    scores, pos = _labels(id_scores, ood_scores, _check_positive(positive))
    tps, fps = _descending_curve(scores, pos)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    recall = np.concatenate([[0.0], recall])
    precision = np.concatenate([[precision[0]], precision])
    keep = thin_curve(recall, precision, max_points)
    return Curve(recall[keep], precision[keep], int(recall.size))


def roc_pr_curves(id_scores: Scores, ood_scores: Scores, positive: str = "id",
                  max_points: int = MAX_CURVE_POINTS) -> tuple[Curve, Curve]:
    """(ROC, PR) curves from one sort: the same points as ``roc_curve`` and ``pr_curve``."""
    scores, pos = _labels(id_scores, ood_scores, _check_positive(positive))
    tps, fps = _descending_curve(scores, pos)
    tpr = np.concatenate([[0.0], tps / tps[-1]])
    fpr = np.concatenate([[0.0], fps / fps[-1]])
    keep = thin_curve(fpr, tpr, max_points)
    roc = Curve(fpr[keep], tpr[keep], int(fpr.size))
    precision = tps / (tps + fps)
    precision = np.concatenate([[precision[0]], precision])
    keep = thin_curve(tpr, precision, max_points)
    return roc, Curve(tpr[keep], precision[keep], int(tpr.size))


def tpr_threshold(id_scores: Scores, tpr: float = 0.95) -> float:
    """The score threshold that keeps ``tpr`` of the ID samples (score >= threshold).

    This is the operating point of FPR95 under the ID-positive convention: the
    largest threshold t such that at least ``tpr`` of ID scores are >= t.
    """
    if not 0 < tpr <= 1:
        raise ParameterError(f"tpr must be in (0, 1], got {tpr!r}.")
    ind = np.sort(_as_scores(id_scores, "ID"))[::-1]
    k = int(np.ceil(tpr * ind.size - 1e-9))
    return float(ind[max(k, 1) - 1])


def density_histograms(scores: Mapping[str, np.ndarray | Sequence[float]], bins: int = 60,
                       value_range: tuple[float, float] | None = None,
                       clip_quantile: float = 0.001) -> Histogram:
    """Density-normalised histograms of several score sets on shared bin edges.

    The range defaults to the [q, 1-q] quantiles of all scores pooled (q =
    ``clip_quantile``) so that a few extreme scores do not squash the plot; values
    outside are counted in the edge bins (how many: ``Histogram.outside``). Empty sets
    get all-zero densities.
    """
    if bins < 1:
        raise ParameterError(f"bins must be >= 1, got {bins!r}.")
    arrays = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in scores.items()}
    nonempty = [a[np.isfinite(a)] for a in arrays.values() if a.size]
    if value_range is None:
        if not nonempty:
            value_range = (0.0, 1.0)
        else:
            pooled = np.concatenate(nonempty)
            lo, hi = np.quantile(pooled, [clip_quantile, 1 - clip_quantile])
            if not hi > lo:
                lo, hi = float(pooled.min()) - 0.5, float(pooled.max()) + 0.5
            value_range = (float(lo), float(hi))
    lo, hi = value_range
    edges = np.linspace(lo, hi, bins + 1)
    dens: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    outside: dict[str, tuple[int, int]] = {}
    width = (hi - lo) / bins
    for name, a in arrays.items():
        a = a[np.isfinite(a)]
        counts[name] = int(a.size)
        outside[name] = (int(np.count_nonzero(a < lo)), int(np.count_nonzero(a > hi)))
        if a.size == 0:
            dens[name] = np.zeros(bins)
            continue
        c, _ = np.histogram(np.clip(a, lo, hi), bins=edges)
        dens[name] = c / (a.size * width)
    return Histogram(edges, dens, counts, outside)
