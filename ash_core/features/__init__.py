"""Scores on (possibly shaped) features, fitted on id_fit: KNN, Mahalanobis, RMDS, ViM,
Residual, NCI, fDBD. ``list_feature_scores()`` names them; ``get_feature_score(name)``
gives the spec (None for a score on logits)."""

# isort: off
# the scores register in this order, which is the order every tool lists them in
from ash_core.features import boundary  # noqa: F401
from ash_core.features import mahalanobis  # noqa: F401
from ash_core.features import knn  # noqa: F401
from ash_core.features import vim  # noqa: F401
# isort: on
from ash_core.features.base import (
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
