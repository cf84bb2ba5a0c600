"""Scores from the geometry of the head around the id_fit mean: NCI and fDBD.

NCI: Liu & Qin, "Detecting Out-of-Distribution through the Lens of Neural Collapse",
CVPR 2025 (OpenOOD's ``nci_postprocessor.py``): with ``m`` the id_fit feature mean and
``c`` the predicted class, ``W_c . (x - m) / ||x - m|| + alpha * ||x||_1``.

fDBD: Liu & Qin, "Fast Decision Boundary based Out-of-Distribution Detector", ICML 2024
(OpenOOD's ``fdbd_postprocessor.py``): the feature distance to each decision boundary of
the predicted class ``c``, ``|z_c - z_j| / ||W_c - W_j||`` summed over classes j (j = c
adds 0), divided by ``||x - m||`` (``distance=1``, the paper's) or ``||x||``
(``distance=0``). Where two head rows coincide their boundary distance is undefined:
the divisor is clamped at 1e-12, as both norms are (OpenOOD clamps the feature norm only).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ash_core.features.base import (
    FIT_FEATURES,
    FIT_HEAD,
    FeatureScore,
    FitData,
    State,
    register_feature_score,
    rows64,
)
from ash_core.params import ParamSpec

TINY = 1e-12


def fit_mean(data: FitData, params: Mapping[str, float]) -> State:
    return {"mean": rows64(data.features).mean(axis=0)}


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float64))


def score_nci(features, logits, head, state: State, params) -> torch.Tensor:
    x = features.to(torch.float64)
    w = head[0].to(torch.float64)
    centred = x - _t(state["mean"])
    pred = logits.argmax(dim=1)
    aligned = (w[pred] * centred).sum(dim=1)
    norm = torch.linalg.vector_norm(centred, dim=1).clamp_min(TINY)
    return aligned / norm + float(params["alpha"]) * x.abs().sum(dim=1)


def score_fdbd(features, logits, head, state: State, params) -> torch.Tensor:
    x = features.to(torch.float64)
    z = logits.to(torch.float64)
    w = head[0].to(torch.float64)
    top, pred = z.max(dim=1)
    gaps = (z - top[:, None]).abs()
    denom = torch.cdist(w, w).clamp_min(TINY)[pred]
    shift = _t(state["mean"]) if params["distance"] else torch.zeros(x.shape[1],
                                                                       dtype=torch.float64)
    norm = torch.linalg.vector_norm(x - shift, dim=1).clamp_min(TINY)
    return (gaps / denom).sum(dim=1) / norm


HEAD_FIT = frozenset({FIT_FEATURES, FIT_HEAD})
NCI = register_feature_score(FeatureScore(
    "nci", "NCI: alignment of the centred feature with the predicted class's weight, plus "
    "alpha times its L1 norm", fit_mean, score_nci,
    params=(ParamSpec("alpha", 0.0001, 0.0, 1000.0, "weight of the feature's L1 norm",
                      search_grid=(0.0, 0.0001, 0.001, 0.01)),),
    fit_on=HEAD_FIT, reference="Liu & Qin, CVPR 2025",
))
FDBD = register_feature_score(FeatureScore(
    "fdbd", "fDBD: summed distance to the predicted class's decision boundaries, over the "
    "feature's distance to the id_fit mean", fit_mean, score_fdbd,
    params=(ParamSpec("distance", 1, 0, 2, "1: divide by ||x - id_fit mean|| (the paper); "
                      "0: by ||x||", kind="int", search_grid=(0, 1)),),
    fit_on=HEAD_FIT, reference="Liu & Qin, ICML 2024",
))
