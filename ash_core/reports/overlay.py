"""Several methods' scores on one figure: ID vs pooled-OOD histograms and ROC curves.

Each method's result (``EvalResult`` with its scores) becomes its ID and OOD score
histograms (each method on its own bin edges: scores of different methods are on
different scales) and its ROC curve of ID against every selected OOD set pooled, with that
curve's AUROC (pooled, so it can differ from the average of the per-set AUROCs). No
Streamlit here: the dashboard's Compare view draws what this returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ash_core.engine.exact import EvalResult
from ash_core.errors import ParameterError
from ash_core.maths.curves import MAX_CURVE_POINTS, Curve, Histogram, density_histograms, roc_curve
from ash_core.maths.metrics import IdScores

ID_KEY, OOD_KEY = "ID", "OOD (pooled)"


@dataclass(frozen=True)
class MethodScores:
    """One method's overlay data: histograms (keys ``ID_KEY``, ``OOD_KEY``), ROC, AUROC."""

    label: str
    histogram: Histogram
    roc: Curve
    pooled_auroc: float


def pooled_ood(result: EvalResult) -> np.ndarray:
    """Every selected OOD set's scores in one array (the result's OOD order)."""
    if not result.ood_scores:
        raise ParameterError("the result holds no OOD scores; evaluate it with OOD sets "
                             "selected.")
    return np.concatenate([np.asarray(s, dtype=float).reshape(-1)
                           for s in result.ood_scores.values()])


def method_scores(label: str, result: EvalResult, bins: int = 60,
                  max_points: int = MAX_CURVE_POINTS) -> MethodScores:
    """``result``'s overlay data (see the module doc); positive class = its convention."""
    if result.id_scores is None:
        raise ParameterError(f"{label}: the result holds no ID scores.")
    ood = pooled_ood(result)
    ids = np.asarray(result.id_scores, dtype=float)
    hist = density_histograms({ID_KEY: ids, OOD_KEY: ood}, bins)
    return MethodScores(label, hist, roc_curve(ids, ood, result.convention, max_points),
                        IdScores(ids).metric(ood, "auroc", result.convention))


def overlay(results: Mapping[str, EvalResult], bins: int = 60,
            max_points: int = MAX_CURVE_POINTS) -> dict[str, MethodScores]:
    """``method_scores`` of each labelled result, in the given order."""
    return {label: method_scores(label, r, bins, max_points) for label, r in results.items()}
