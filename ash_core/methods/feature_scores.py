"""Every score on features (``ash_core.features``: KNN, ViM, Mahalanobis, ...) also as a
method of its own: no shaping, that score."""

from __future__ import annotations

from ash_core.features import get_feature_score, list_feature_scores
from ash_core.methods._registry import register_method, unchanged


def register_feature_score_methods() -> None:
    """Every score on features also as a method of its own (no shaping, that score), so
    ``--method knn`` works and the contract suite covers its parameters."""
    for name in list_feature_scores():
        fs = get_feature_score(name)
        register_method(
            name, description=fs.description + " (no shaping; combine with a shaping method "
            f"as --score {name})", params=fs.params, fit_on=fs.fit_on, family="features",
            reference=fs.reference, keeps_features=True, feature_score=name,
        )(unchanged)


register_feature_score_methods()
