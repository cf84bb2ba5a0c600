"""Principal-subspace scores: ViM and Residual.

Both move the origin to ``u = -pinv(W) b`` (the point the head maps to zero logits) and
take the residual of ``x - u`` outside the ``dim`` leading principal directions of the
id_fit features (eigenvectors of ``(X - u)^T (X - u) / N``, uncentred as OpenOOD's
``EmpiricalCovariance(assume_centered=True)``).

ViM: Wang, Li, Feng & Zhang, "ViM: Out-Of-Distribution with Virtual-logit Matching",
CVPR 2022, Eq. 3-6 (official code and OpenOOD's ``vim_postprocessor.py``): the virtual
logit ``alpha * ||residual||`` with ``alpha = mean max-logit / mean ||residual||`` over
id_fit; score ``logsumexp(logits) - alpha * ||residual||``. Residual: OpenOOD's
``residual_postprocessor.py``, score ``-||residual||``.

``dim = 0`` applies the official rule: 1000 if D >= 2048, 512 if D >= 768, else D // 2.
When the id_fit residual is zero (every feature in the leading subspace), ViM's alpha is
taken as 0 (the score is then the energy) instead of dividing by zero.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ash_core.errors import ParameterError
from ash_core.features.base import (
    FIT_FEATURES,
    FIT_HEAD,
    FeatureScore,
    FitData,
    State,
    chunked,
    register_feature_score,
    rows64,
)
from ash_core.params import ParamSpec


def auto_dim(d: int) -> int:
    """ViM's official principal-subspace size for feature dimension ``d``."""
    return 1000 if d >= 2048 else 512 if d >= 768 else d // 2


def _dim(params: Mapping[str, float], d: int, score: str) -> int:
    dim = int(params["dim"]) or auto_dim(d)
    if not 0 < dim < d:
        raise ParameterError(f"{score}: dim={dim} must be in [1, {d - 1}] for {d}-dimensional "
                             "features (the residual space must not be empty); dim=0 picks "
                             "the official rule.")
    return dim


def _basis(data: FitData) -> tuple[np.ndarray, np.ndarray]:
    """(u, every eigenvector of the uncentred id_fit second moment, ascending): what
    every dim shares, made once per fit data (``FitData.shared``)."""
    w, b = rows64(data.weight), data.bias.detach().cpu().numpy().astype(np.float64)
    u = -np.linalg.pinv(w) @ b
    x = rows64(data.features) - u
    _, vecs = np.linalg.eigh(x.T @ x / x.shape[0])   # ascending eigenvalues
    return u, vecs


def _residual_state(data: FitData, params: Mapping[str, float], score: str) -> State:
    d = int(np.prod(data.features.shape[1:]))
    dim = _dim(params, d, score)
    u, vecs = data.shared("subspace", lambda: _basis(data))
    return {"u": u, "null_space": vecs[:, : d - dim]}


def _residual_norm(x: torch.Tensor, state: State) -> torch.Tensor:
    u = torch.from_numpy(np.array(state["u"], dtype=np.float64))
    ns = torch.from_numpy(np.array(state["null_space"], dtype=np.float64))
    return chunked(lambda c: torch.linalg.vector_norm((c.to(torch.float64) - u) @ ns, dim=1), x)


def fit_vim(data: FitData, params: Mapping[str, float]) -> State:
    state = _residual_state(data, params, "vim")
    vlogit = _residual_norm(data.features, state).numpy()
    max_logit = data.logits.to(torch.float64).amax(dim=1).numpy()
    mean_v = float(vlogit.mean())
    alpha = float(max_logit.mean()) / mean_v if mean_v > 0 else 0.0
    return {**state, "alpha": np.array([alpha])}


def score_vim(features, logits, head, state: State, params) -> torch.Tensor:
    energy = torch.logsumexp(logits.to(torch.float64), dim=1)
    return energy - float(np.asarray(state["alpha"])[0]) * _residual_norm(features, state)


def fit_residual(data: FitData, params: Mapping[str, float]) -> State:
    return _residual_state(data, params, "residual")


def score_residual(features, logits, head, state: State, params) -> torch.Tensor:
    return -_residual_norm(features, state)


DIM_HELP = "principal-subspace size (0: 1000 if D >= 2048, 512 if D >= 768, else D/2)"


def dim_param(grid: tuple[float, ...]) -> ParamSpec:
    return ParamSpec("dim", 0, 0, 1_000_001, DIM_HELP, kind="int",
                     recommended={"imagenet": 1000}, search_grid=grid)


SUBSPACE_FIT = frozenset({FIT_FEATURES, FIT_HEAD})
VIM = register_feature_score(FeatureScore(
    "vim", "ViM: energy minus a virtual logit (the scaled residual outside the principal "
    "subspace of id_fit)", fit_vim, score_vim, params=(dim_param((256, 512, 1000)),),
    fit_on=SUBSPACE_FIT, reference="Wang et al., CVPR 2022",
))
RESIDUAL = register_feature_score(FeatureScore(
    "residual", "Residual: minus the norm of the feature outside the principal subspace of "
    "id_fit", fit_residual, score_residual, params=(dim_param((256, 512, 1000)),),
    fit_on=SUBSPACE_FIT, reference="Wang et al., CVPR 2022 (OpenOOD's residual baseline)",
))
