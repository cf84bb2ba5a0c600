"""Scores on (possibly shaped) features, fitted on id_fit: KNN, Mahalanobis, RMDS, ViM,
Residual, NCI, fDBD. ``list_feature_scores()`` names them; ``get_feature_score(name)``
gives the spec (None for a score on logits)."""

from . import boundary, gaussian, neighbours, subspace  # noqa: F401  (registration order)
from .base import (
    FIT_FEATURES,
    FIT_HEAD,
    FIT_LABELS,
    FeatureScore,
    FitData,
    get_feature_score,
    list_feature_scores,
)

__all__ = ["FIT_FEATURES", "FIT_HEAD", "FIT_LABELS", "FeatureScore", "FitData",
           "get_feature_score", "list_feature_scores"]
