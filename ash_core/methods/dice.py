"""DICE (Sun & Li, "DICE: Leveraging Sparsification for Out-of-Distribution Detection",
ECCV 2022): sparsify the linear head by each weight's contribution on id_fit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ash_core.features import FIT_FEATURES, FIT_HEAD
from ash_core.methods._registry import register_method, unchanged
from ash_core.params import ParamSpec


def fit_dice(features: torch.Tensor, params: Mapping[str, float], head: Any
             ) -> tuple[float, torch.Tensor]:
    """DICE's fit (Sun & Li, ECCV 2022, Sec. 3; the official ``RouteDICE`` layer and
    OpenOOD's ``DICEPostprocessor``): the contribution of unit d to class c is
    ``mean_d * W[c, d]`` (``mean`` = the id_fit features' mean); the weights whose
    contribution exceeds its p-th percentile are kept, the others zeroed. Returns the
    contribution cutoff and the masked weight."""
    weight = head[0]
    rows = torch.as_tensor(np.asarray(features, dtype=np.float32)) \
        if not isinstance(features, torch.Tensor) else features
    mean = rows.reshape(rows.shape[0], -1).to(torch.float64).mean(dim=0)
    contrib = mean[None, :] * weight.to(torch.float64)
    cutoff = float(np.percentile(contrib.numpy(), params["p"]))
    return cutoff, torch.where(contrib > cutoff, weight, torch.zeros((), dtype=weight.dtype))


register_method(
    "dice",
    params=(ParamSpec("p", 90.0, 0.0, 100.0, "sparsity: share of head weights zeroed, by their "
                      "contribution on id_fit", recommended={"cifar10": 90.0, "cifar100": 90.0},
                      search_grid=(90.0,)),),
    fit="always", fit_on=frozenset({FIT_FEATURES, FIT_HEAD}), fitter=fit_dice,
    head_fn=lambda weight, bias, masked: (masked, bias), keeps_features=True, family="head",
    description="DICE: sparsify the head, keeping the weights with the largest contribution "
                "(id_fit mean x weight); energy score",
    reference="Sun & Li, ECCV 2022",
)(unchanged)
