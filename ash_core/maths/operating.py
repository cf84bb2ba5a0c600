"""An operating point: one threshold on the score axis and what it does to each split.

A sample whose score is at or above the threshold is kept as in-distribution; below it,
it is flagged as OOD (scores are "higher = more ID", as in :mod:`ash_core.maths.metrics`).
The rates follow the FPR convention: with ID positive (``"id"``), TPR is the share of ID
kept, FPR the share of an OOD set kept and precision the share of ID among what is kept;
with OOD positive (``"ood"``), TPR is the share of an OOD set flagged, FPR the share of ID
flagged and precision the share of OOD among what is flagged. The threshold that keeps a
share of ID is the one FPR95 uses, so at 95% the FPR here is the reported FPR95 (``"id"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ash_core.errors import ParameterError
from ash_core.maths.metrics import _as_scores, _kept_count, check_convention

#: the share of ID kept that an operating point starts at (FPR95's)
DEFAULT_ID_KEPT = 0.95
#: the name of the row that pools every OOD set
POOLED = "all OOD sets"


def threshold_at_id_kept(id_scores: Any, kept: float = DEFAULT_ID_KEPT) -> float:
    """The largest threshold that keeps at least ``kept`` of the ID scores (score >=
    threshold): the k-th largest ID score, k the fewest with k / n >= ``kept``."""
    if not 0.0 < kept <= 1.0:
        raise ParameterError(f"the share of ID kept must be in (0, 1], got {kept!r} "
                             "(0.95 keeps 95% of the ID images).")
    ids = np.sort(_as_scores(id_scores, "ID"))
    return float(ids[ids.size - _kept_count(ids.size, kept)])


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


@dataclass(frozen=True)
class OperatingPoint:
    """Counts at one threshold: ID and each OOD set, kept (>= threshold) and total."""

    threshold: float
    convention: str
    id_name: str
    id_kept: int
    id_total: int
    ood_kept: dict[str, int]
    ood_total: dict[str, int]

    def _counts(self, name: str) -> tuple[int, int]:
        if name == POOLED:
            return sum(self.ood_kept.values()), sum(self.ood_total.values())
        return self.ood_kept[name], self.ood_total[name]

    def rates(self, name: str) -> dict[str, float | None]:
        """TPR, FPR and precision of ID against OOD set ``name`` (or ``POOLED``), in the
        convention; None where nothing is kept (or flagged) to divide by."""
        ood_kept, ood_total = self._counts(name)
        if self.convention == "id":
            return {"tpr": _ratio(self.id_kept, self.id_total),
                    "fpr": _ratio(ood_kept, ood_total),
                    "precision": _ratio(self.id_kept, self.id_kept + ood_kept)}
        id_flagged, ood_flagged = self.id_total - self.id_kept, ood_total - ood_kept
        return {"tpr": _ratio(ood_flagged, ood_total),
                "fpr": _ratio(id_flagged, self.id_total),
                "precision": _ratio(ood_flagged, ood_flagged + id_flagged)}

    def rows(self) -> list[dict[str, Any]]:
        """The readout as table rows: the ID split, each OOD set and all OOD sets pooled,
        with the images kept and flagged, the share flagged, and TPR/FPR/precision for the
        OOD rows."""
        out = []
        for name in [self.id_name, *self.ood_total, *([POOLED] if self.ood_total else [])]:
            is_id = name == self.id_name
            kept, total = (self.id_kept, self.id_total) if is_id else self._counts(name)
            rates = ({"tpr": None, "fpr": None, "precision": None} if is_id
                     else self.rates(name))
            out.append({"split": name, "role": "id" if is_id else "ood", "n": total,
                        "kept": kept, "flagged": total - kept,
                        "flagged_share": _ratio(total - kept, total), **rates,
                        "threshold": self.threshold})
        return out


def operating_point(id_scores: Any, ood_scores: Mapping[str, Any], threshold: float,
                    convention: str = "id", id_name: str = "ID") -> OperatingPoint:
    """What threshold ``threshold`` keeps and flags of the ID split and each OOD set."""
    check_convention(convention)
    t = float(threshold)
    if not np.isfinite(t):
        raise ParameterError(f"the threshold must be a finite score, got {threshold!r}.")
    ids = _as_scores(id_scores, "ID")
    oods = {n: _as_scores(s, "OOD") for n, s in ood_scores.items()}
    return OperatingPoint(t, convention, id_name, int(np.count_nonzero(ids >= t)), ids.size,
                          {n: int(np.count_nonzero(s >= t)) for n, s in oods.items()},
                          {n: s.size for n, s in oods.items()})
