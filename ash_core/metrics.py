"""OOD detection metrics: FPR@95TPR, AUROC, AUPR-In, AUPR-Out.

Scores are "higher = more in-distribution". Two conventions are offered and the
result always says which one it used:

* ``"id"`` (default; the ASH paper's): ID is the positive class. FPR95 is the share of
  OOD samples accepted at the threshold that keeps 95% of ID samples.
* ``"ood"`` (OpenOOD's): OOD is the positive class. FPR95 is the share of ID samples
  rejected at the threshold that catches 95% of OOD samples.

AUROC is the same number under both. AUPR-In is the average precision with ID as
positive, AUPR-Out with OOD as positive (scores negated), in both conventions. All
values are fractions in [0, 1]. Ties are handled exactly as scikit-learn does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .errors import FeatureError, ParameterError

METRIC_NAMES: tuple[str, ...] = ("fpr95", "auroc", "aupr_in", "aupr_out")
CONVENTIONS: dict[str, str] = {
    "id": "ID positive (ASH paper): FPR95 = OOD accepted at 95% ID kept",
    "ood": "OOD positive (OpenOOD): FPR95 = ID rejected at 95% OOD caught",
}
#: Metrics where a larger value is better (used for deltas and colouring).
HIGHER_IS_BETTER: dict[str, bool] = {
    "fpr95": False,
    "auroc": True,
    "aupr_in": True,
    "aupr_out": True,
}


@dataclass(frozen=True)
class OODMetrics(Mapping[str, float]):
    """The four OOD metrics, labelled with the convention they were computed under."""

    fpr95: float
    auroc: float
    aupr_in: float
    aupr_out: float
    convention: str = "id"

    def __getitem__(self, key: str) -> float:
        if key not in METRIC_NAMES:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(METRIC_NAMES)

    def __len__(self) -> int:
        return len(METRIC_NAMES)

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in METRIC_NAMES}


def check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ParameterError(
            f"unknown FPR convention {convention!r}; use 'id' (ID positive, the ASH paper's) "
            "or 'ood' (OOD positive, OpenOOD's)."
        )
    return convention


def _as_scores(scores: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().to(torch.float64).numpy()  # numpy has no bfloat16
    arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise FeatureError(f"{what} scores are empty; every split needs at least one sample.")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise FeatureError(
            f"{what} scores contain {bad} NaN/Inf values; check the features for NaN/Inf "
            "or lower p (ASH-S can overflow when very few units survive)."
        )
    return arr


def _descending_curve(scores: np.ndarray, positive: np.ndarray):
    """Cumulative TP/FP counts at each distinct threshold, highest score first."""
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    y = positive[order]
    distinct = np.flatnonzero(np.diff(s)) if s.size > 1 else np.empty(0, dtype=np.int64)
    ends = np.concatenate([distinct, [s.size - 1]])
    tps = np.cumsum(y)[ends]
    fps = (ends + 1) - tps
    return tps.astype(np.float64), fps.astype(np.float64)


def _average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    tps, fps = _descending_curve(scores, positive)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    recall_steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(recall_steps * precision))


def _fpr_at_tpr(scores: np.ndarray, positive: np.ndarray, tpr_target: float) -> float:
    tps, fps = _descending_curve(scores, positive)
    tpr = tps / tps[-1]
    fpr = fps / fps[-1]
    idx = int(np.searchsorted(tpr, tpr_target, side="left"))
    return float(fpr[min(idx, tpr.size - 1)])


def _auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(pos > neg) + 0.5 P(pos == neg), via average ranks (Mann-Whitney U)."""
    both = np.concatenate([pos, neg])
    order = np.argsort(both, kind="mergesort")
    sorted_vals = both[order]
    ranks = np.empty(both.size, dtype=np.float64)
    # average ranks of tied groups
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_vals)) + 1])
    ends = np.concatenate([starts[1:], [both.size]])
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def ood_metrics(
    id_scores: torch.Tensor | np.ndarray,
    ood_scores: torch.Tensor | np.ndarray,
    convention: str = "id",
    tpr: float = 0.95,
) -> OODMetrics:
    """FPR@95TPR, AUROC, AUPR-In and AUPR-Out for one ID/OOD pair of score arrays."""
    check_convention(convention)
    ind = _as_scores(id_scores, "ID")
    ood = _as_scores(ood_scores, "OOD")
    scores = np.concatenate([ind, ood])
    is_id = np.concatenate([np.ones(ind.size, dtype=bool), np.zeros(ood.size, dtype=bool)])
    if convention == "id":
        fpr95 = _fpr_at_tpr(scores, is_id, tpr)
    else:
        fpr95 = _fpr_at_tpr(-scores, ~is_id, tpr)
    return OODMetrics(
        fpr95=fpr95,
        auroc=_auroc(ind, ood),
        aupr_in=_average_precision(scores, is_id),
        aupr_out=_average_precision(-scores, ~is_id),
        convention=convention,
    )


def average_metrics(per_set: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Unweighted mean of each metric over OOD sets (the paper's "Average" column)."""
    if not per_set:
        raise ParameterError("no OOD sets to average over; select at least one OOD split.")
    return {
        name: float(np.mean([m[name] for m in per_set.values()])) for name in METRIC_NAMES
    }
