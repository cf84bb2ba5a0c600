"""Ties between ID and OOD scores, and how far they could move the AUROC.

The AUROC counts a tied (ID, OOD) pair as 1/2 (``metrics``, as scikit-learn does). Where
many pairs tie (a score that takes few distinct values: KNN on ASH-B's binarised rows,
scores on duplicated rows), the number depends on that convention: broken all in favour
of ID the AUROC is ``auroc_max``, all against ``auroc_min``, and the reported value is
their midpoint. ``TIE_LEVEL`` is the one level above which the tools say so beside the
number: more than 0.1% of the pairs tied, i.e. a range over tie orders wider than 0.1
AUROC points.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

#: share of tied (ID, OOD) pairs above which a result states its ties (module doc)
TIE_LEVEL = 1e-3


@dataclass(frozen=True)
class TieRange:
    """``tied``: share of (ID, OOD) score pairs that are equal; the AUROC with every tie
    broken against ID (``auroc_min``) and in its favour (``auroc_max``)."""

    tied: float
    auroc_min: float
    auroc_max: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def _flat(scores: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().to(torch.float64).numpy()
    return np.asarray(scores, dtype=np.float64).reshape(-1)


def auroc_range(id_scores: torch.Tensor | np.ndarray,
                ood_scores: torch.Tensor | np.ndarray) -> TieRange:
    """The tied share and the AUROC range over tie orders (higher score = more ID)."""
    ids = np.sort(_flat(id_scores))
    ood = _flat(ood_scores)
    n, m = ids.size, ood.size
    if n == 0 or m == 0:
        return TieRange(0.0, float("nan"), float("nan"))
    below = np.searchsorted(ids, ood, "left")
    upto = np.searchsorted(ids, ood, "right")
    wins = float(np.sum(n - upto))
    ties = float(np.sum(upto - below))
    pairs = float(n) * float(m)
    return TieRange(ties / pairs, wins / pairs, (wins + ties) / pairs)


def large_ties(id_scores: torch.Tensor | np.ndarray,
               ood_scores: dict[str, torch.Tensor | np.ndarray],
               level: float = TIE_LEVEL) -> dict[str, TieRange]:
    """``auroc_range`` of each OOD set whose tied share is above ``level``."""
    out = {}
    for name, scores in ood_scores.items():
        r = auroc_range(id_scores, scores)
        if r.tied > level:
            out[name] = r
    return out
