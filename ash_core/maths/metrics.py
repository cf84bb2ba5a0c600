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

from ash_core.errors import FeatureError, ParameterError

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
        """The four metrics as plain floats (without the convention)."""
        return {name: float(getattr(self, name)) for name in METRIC_NAMES}


def check_convention(convention: str) -> str:
    """``convention`` if it is ``"id"`` or ``"ood"``, else a ParameterError saying which to use."""
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


def _distinct(sorted_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct values of an ascending array, their first positions and counts."""
    n = sorted_scores.size
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_scores)) + 1])
    counts = np.diff(np.concatenate([starts, [n]]))
    return sorted_scores[starts], starts, counts


class _Positive:
    """One positive class (ascending scores) with what FPR95 and AP need, computed once."""

    def __init__(self, ascending: np.ndarray, tpr: float = 0.95):
        self.scores = ascending
        n = ascending.size
        self.values, starts, counts = _distinct(ascending)
        self.count_ge = (n - starts).astype(np.float64)
        self.counts = counts.astype(np.float64)
        self.n = n
        ok = self.count_ge / float(n) >= tpr
        # the largest positive score whose TPR is still >= tpr (sklearn's roc_curve point)
        self.threshold = self.values[np.flatnonzero(ok)[-1]]

    def fpr(self, neg_ascending: np.ndarray) -> float:
        m = neg_ascending.size
        return float((m - np.searchsorted(neg_ascending, self.threshold, "left")) / m)

    def average_precision(self, neg_ascending: np.ndarray) -> float:
        # AP is a sum over distinct positive scores only: recall does not move elsewhere.
        fps = neg_ascending.size - np.searchsorted(neg_ascending, self.values, "left")
        terms = self.counts * (self.count_ge / (self.count_ge + fps))
        return float(np.sum(terms[::-1]) / self.n)


class IdScores:
    """ID scores sorted once and reused for every OOD set (one sort per set, not per metric).

    Every metric comes from ``searchsorted`` counts on sorted arrays, so ties are exact:
    AUROC counts ties as 1/2, FPR95 and AP match scikit-learn's ``roc_curve`` and
    ``average_precision_score``.
    """

    def __init__(self, scores: torch.Tensor | np.ndarray, tpr: float = 0.95):
        if not 0.0 < tpr <= 1.0:
            raise ParameterError(f"tpr must be in (0, 1], got {tpr!r}.")
        arr = _as_scores(scores, "ID")
        self.tpr = tpr
        self.asc = np.sort(arr, kind="stable")
        self.neg_asc = -self.asc[::-1]
        self._pos: _Positive | None = None

    @property
    def positive(self) -> _Positive:
        if self._pos is None:
            self._pos = _Positive(self.asc, self.tpr)
        return self._pos

    def _auroc(self, ood: np.ndarray) -> float:
        """AUROC by counting (ties 1/2); ``ood`` in any order (the counts are integers),
        fastest sorted."""
        n, m = self.asc.size, ood.size
        below = np.searchsorted(self.asc, ood, "left")
        upto = np.searchsorted(self.asc, ood, "right")
        wins = float(np.sum(n - upto)) + 0.5 * float(np.sum(upto - below))
        return wins / (n * m)

    def metric(self, ood_scores: torch.Tensor | np.ndarray, name: str,
               convention: str = "id") -> float:
        """One metric of one OOD set, equal to ``metrics(...)[name]``: AUROC without sorting
        the OOD scores or computing the others (what a search over many points needs)."""
        if name == "auroc":  # sorted queries make searchsorted several times faster
            return self._auroc(np.sort(_as_scores(ood_scores, "OOD")))
        return float(self.metrics(ood_scores, convention)[name])

    def metrics(self, ood_scores: torch.Tensor | np.ndarray, convention: str = "id"
                ) -> OODMetrics:
        """The four metrics of one OOD set against these ID scores."""
        check_convention(convention)
        ood = np.sort(_as_scores(ood_scores, "OOD"), kind="stable")
        ood_pos = _Positive(-ood[::-1], self.tpr)
        fpr95 = self.positive.fpr(ood) if convention == "id" else ood_pos.fpr(self.neg_asc)
        return OODMetrics(
            fpr95=fpr95,
            auroc=self._auroc(ood),
            aupr_in=self.positive.average_precision(ood),
            aupr_out=ood_pos.average_precision(self.neg_asc),
            convention=convention,
        )


def ood_metrics(
    id_scores: torch.Tensor | np.ndarray,
    ood_scores: torch.Tensor | np.ndarray,
    convention: str = "id",
    tpr: float = 0.95,
) -> OODMetrics:
    """FPR@95TPR, AUROC, AUPR-In and AUPR-Out for one ID/OOD pair of score arrays."""
    check_convention(convention)
    return IdScores(id_scores, tpr).metrics(ood_scores, convention)


def ood_metrics_many(
    id_scores: torch.Tensor | np.ndarray,
    ood_scores: Mapping[str, torch.Tensor | np.ndarray],
    convention: str = "id",
    tpr: float = 0.95,
) -> dict[str, OODMetrics]:
    """``ood_metrics`` for several OOD sets against one ID set, sorting the ID scores once."""
    check_convention(convention)
    ids = IdScores(id_scores, tpr)
    return {name: ids.metrics(s, convention) for name, s in ood_scores.items()}


def average_metrics(per_set: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Unweighted mean of each metric over OOD sets (the paper's "Average" column)."""
    if not per_set:
        raise ParameterError("no OOD sets to average over; select at least one OOD split.")
    return {
        name: float(np.mean([m[name] for m in per_set.values()])) for name in METRIC_NAMES
    }


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better: ``"fpr95"``, ``"auroc"``, ... or a
    frame column such as ``"average/fpr95"`` (the part after the last ``/`` counts)."""
    name = metric.rsplit("/", 1)[-1]
    try:
        return HIGHER_IS_BETTER[name]
    except KeyError:
        raise ParameterError(
            f"unknown metric {metric!r}; use one of: {', '.join(METRIC_NAMES)}."
        ) from None


# --------------------------------------------------------------------------- batched: [G, n] blocks
#
# A search scores the same splits at G grid points. These functions take a block of scores
# [G, n] (one row per grid point) and return one value per row, equal bit for bit to
# ``IdScores(row).metric(...)``: every value is the same ratio of the same integer counts.
# Each block is sorted once, in one call, in its own dtype (float32 stays float32: the
# comparisons are exact in either width).

#: the metrics the batched functions compute (the ones a search selects by)
BATCHED_METRICS: tuple[str, ...] = ("auroc", "fpr95")


def _as_block(scores: torch.Tensor | np.ndarray, what: str, sort: bool = False) -> np.ndarray:
    """``[G, n]`` scores (``[n]`` is one row) as float32 or float64, each row sorted when
    ``sort``; empty or non-finite scores are the FeatureErrors of ``_as_scores``."""
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu()
        scores = (scores if scores.dtype == torch.float32 else scores.to(torch.float64)).numpy()
    arr = np.asarray(scores)
    arr = arr[None, :] if arr.ndim == 1 else arr
    if arr.ndim != 2:
        raise ParameterError(f"{what} scores must be [grid points, samples], got shape "
                             f"{tuple(arr.shape)}.")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.shape[1] == 0:
        raise FeatureError(f"{what} scores are empty; every split needs at least one sample.")
    if sort:  # NaN sorts last, -Inf first: the two end columns tell
        arr = np.sort(arr, axis=1)
    if not np.isfinite(arr[:, [0, -1]] if sort else arr).all():
        finite = np.isfinite(arr)
        raise FeatureError(
            f"{what} scores contain {int(arr.size - finite.sum())} NaN/Inf values; check the "
            "features for NaN/Inf or lower p (ASH-S can overflow when very few units survive)."
        )
    return arr


def _kept_count(n: int, tpr: float) -> int:
    """The fewest of ``n`` positives with ``k / n >= tpr`` (the test ``_Positive`` applies:
    its threshold is the k-th largest positive score). Not ``ceil(tpr * n)``: the product
    rounds (tpr = 0.28, n = 25 gives 8; 7 / 25 >= 0.28 already)."""
    return int(np.searchsorted(np.arange(1, n + 1) / n, tpr, "left")) + 1


def _below_and_equal(ascending: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row ``g``: (sum over ``queries[g]`` of #``ascending[g]`` < q, sum of #== q), int64
    ``[G]``. ``queries`` rows sorted for speed (searchsorted then narrows as it goes)."""
    left = np.empty(queries.shape, dtype=np.intp)
    for g in range(queries.shape[0]):  # numpy has no batched searchsorted
        left[g] = np.searchsorted(ascending[g], queries[g], "left")
    size = ascending.shape[1]
    at = np.minimum(left, size - 1)
    at += np.arange(queries.shape[0])[:, None] * size  # flat positions in the block
    tied = ascending.reshape(-1).take(at) == queries
    tied &= left < size
    equal = np.zeros(queries.shape[0], dtype=np.int64)
    for g in np.flatnonzero(tied.any(axis=1)):  # rare with continuous scores: search again
        right = np.searchsorted(ascending[g], queries[g][tied[g]], "right")
        equal[g] = np.sum(right - left[g][tied[g]])
    return left.sum(axis=1, dtype=np.int64), equal


class IdScoreBlock:
    """ID scores at G grid points ``[G, n]``, each row sorted once (one call for all rows)
    and reused for every OOD block: AUROC and FPR95 per row, as ``IdScores.metric``."""

    def __init__(self, scores: torch.Tensor | np.ndarray, tpr: float = 0.95):
        if not 0.0 < tpr <= 1.0:
            raise ParameterError(f"tpr must be in (0, 1], got {tpr!r}.")
        self.tpr = tpr
        self.asc = _as_block(scores, "ID", sort=True)

    def _ood(self, ood_scores: torch.Tensor | np.ndarray, sort: bool = False) -> np.ndarray:
        ood = _as_block(ood_scores, "OOD", sort)
        if ood.shape[0] != self.asc.shape[0]:
            raise ParameterError(f"the OOD block has {ood.shape[0]} grid points, the ID block "
                                 f"{self.asc.shape[0]}; give both the same rows.")
        if ood.dtype != self.asc.dtype:  # compare in one width (exact: float32 widens)
            return ood.astype(np.float64)
        return ood

    def auroc(self, ood_scores: torch.Tensor | np.ndarray) -> np.ndarray:
        """AUROC of every row (ties count 1/2), ``[G]`` float64."""
        ood = self._ood(ood_scores, sort=True)
        ids = self.asc if self.asc.dtype == ood.dtype else self.asc.astype(np.float64)
        n, m = ids.shape[1], ood.shape[1]
        if n <= m:  # search the smaller side in the larger
            strict, ties = _below_and_equal(ood, ids)
        else:
            below, ties = _below_and_equal(ids, ood)
            strict = n * m - below - ties
        # IdScores._auroc's float sum of the same integers: equal bit for bit
        return (strict.astype(np.float64) + 0.5 * ties.astype(np.float64)) / (n * m)

    def fpr95(self, ood_scores: torch.Tensor | np.ndarray, convention: str = "id"
              ) -> np.ndarray:
        """FPR at ``tpr`` of every row, ``[G]`` float64, in ``convention`` (module doc)."""
        check_convention(convention)
        ood = self._ood(ood_scores)
        n, m = self.asc.shape[1], ood.shape[1]
        if convention == "id":  # OOD accepted at the k-th largest ID score
            threshold = self.asc[:, n - _kept_count(n, self.tpr)]
            return np.count_nonzero(ood >= threshold[:, None], axis=1) / m
        k = _kept_count(m, self.tpr)  # ID rejected at the k-th smallest OOD score
        threshold = np.partition(ood, k - 1, axis=1)[:, k - 1]
        return np.count_nonzero(self.asc <= threshold[:, None], axis=1) / n

    def metric(self, ood_scores: torch.Tensor | np.ndarray, name: str,
               convention: str = "id") -> np.ndarray:
        """``name`` ("auroc" or "fpr95") of every row."""
        if name == "auroc":
            check_convention(convention)
            return self.auroc(ood_scores)
        if name == "fpr95":
            return self.fpr95(ood_scores, convention)
        raise ParameterError(f"no batched metric {name!r}; use one of "
                             f"{', '.join(BATCHED_METRICS)}.")


def batched_metric(id_scores: torch.Tensor | np.ndarray, ood_scores: torch.Tensor | np.ndarray,
                   name: str, convention: str = "id", tpr: float = 0.95) -> np.ndarray:
    """``name`` of every row of an ID block ``[G, n]`` against an OOD block ``[G, m]``."""
    return IdScoreBlock(id_scores, tpr).metric(ood_scores, name, convention)
