"""Class-conditional Gaussians with a tied covariance: Mahalanobis and Relative Mahalanobis.

Mahalanobis: Lee, Lee, Lee & Shin, "A Simple Unified Framework for Detecting
Out-of-Distribution Samples and Adversarial Attacks", NeurIPS 2018, Eq. 2 (feature
ensembles and input pre-processing left out, as OpenOOD's ``mds_postprocessor.py``):
class means of id_fit, one covariance of the class-centred id_fit features (divided by
N, sklearn's ``EmpiricalCovariance``), score ``max_c -(x - mu_c)^T P (x - mu_c)``.

RMDS: Ren et al., "A Simple Fix to Mahalanobis Distance for Improving Near-OOD
Detection", 2021, Eq. 4 (OpenOOD's ``rmds_postprocessor.py``): the same class terms minus
a background Gaussian fitted on all of id_fit (its mean and covariance),
``max_c -(MD_c(x) - MD_0(x))``.

``P`` is the pseudo-inverse (``base.pinvh``), so degenerate covariances stay finite. A
class absent from id_fit has no mean and is left out of the maximum. Computed in float64
as ``x P x - 2 x P mu_c + mu_c P mu_c``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ash_core.errors import ParameterError
from ash_core.features.base import (
    FIT_FEATURES,
    FIT_LABELS,
    FeatureScore,
    FitData,
    State,
    check_labels,
    chunked,
    class_means,
    pinvh,
    register_feature_score,
    rows64,
)


def _class_state(data: FitData, score: str) -> State:
    labels = check_labels(data, score)
    x = rows64(data.features)
    means, present = class_means(x, labels, data.weight.shape[0])
    if not present.any():
        raise ParameterError(f"{score}: the id_fit split has no samples.")
    centred = x - means[labels]
    cov = centred.T @ centred / x.shape[0]
    return {"means": means[present], "precision": pinvh(cov)}


def _min_class_distance(x: torch.Tensor, means: torch.Tensor, prec: torch.Tensor
                        ) -> torch.Tensor:
    xp = x @ prec
    quad = (xp * x).sum(dim=1, keepdim=True)
    mu_term = ((means @ prec) * means).sum(dim=1)[None, :]
    return (quad - 2.0 * (xp @ means.T) + mu_term).amin(dim=1)


def fit_mahalanobis(data: FitData, params: Mapping[str, float]) -> State:
    return _class_state(data, "mahalanobis")


def score_mahalanobis(features, logits, head, state: State, params) -> torch.Tensor:
    means = torch.from_numpy(np.array(state["means"], dtype=np.float64))
    prec = torch.from_numpy(np.array(state["precision"], dtype=np.float64))
    return chunked(lambda x: -_min_class_distance(x.to(torch.float64), means, prec), features)


def fit_rmds(data: FitData, params: Mapping[str, float]) -> State:
    state = _class_state(data, "rmds")
    x = rows64(data.features)
    mean = x.mean(axis=0)
    cov = (x - mean).T @ (x - mean) / x.shape[0]
    return {**state, "bg_mean": mean, "bg_precision": pinvh(cov)}


def score_rmds(features, logits, head, state: State, params) -> torch.Tensor:
    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(np.array(state[name], dtype=np.float64))

    means, prec, bg_mean, bg_prec = t("means"), t("precision"), t("bg_mean"), t("bg_precision")

    def one(x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float64)
        c = x - bg_mean
        background = ((c @ bg_prec) * c).sum(dim=1)
        return background - _min_class_distance(x, means, prec)

    return chunked(one, features)


CLASS_FIT = frozenset({FIT_FEATURES, FIT_LABELS})
MAHALANOBIS = register_feature_score(FeatureScore(
    "mahalanobis", "Mahalanobis: minus the smallest class-conditional Mahalanobis distance "
    "(class means, tied covariance on id_fit)", fit_mahalanobis, score_mahalanobis,
    fit_on=CLASS_FIT, reference="Lee et al., NeurIPS 2018",
))
RMDS = register_feature_score(FeatureScore(
    "rmds", "Relative Mahalanobis: the class-conditional distance minus a background "
    "Gaussian's (fitted on all of id_fit)", fit_rmds, score_rmds,
    fit_on=CLASS_FIT, reference="Ren et al., 2021 (arXiv:2106.09022)",
))
