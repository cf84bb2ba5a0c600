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

The fit does not depend on dim: it keeps u, the D - 1 smallest eigenvectors (ascending)
and, for ViM, the id_fit mean max-logit and mean residual norm at every dim. Per split,
one table (``cumulative``: the running sums of the squared projections onto those
eigenvectors, float64 [N, D-1]) serves every dim by a column read; the direct score is
that same table made and read one row chunk at a time, so both give the same numbers bit
for bit (``tests/test_score_tables.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ash_core.errors import ParameterError
from ash_core.features.base import (
    CHUNK,
    FIT_FEATURES,
    FIT_HEAD,
    FeatureScore,
    FitData,
    ScoreTable,
    State,
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
    _dim(params, d, score)  # refused before the fit; the state serves every dim
    u, vecs = data.shared("subspace", lambda: _basis(data))
    return {"u": u, "basis": np.ascontiguousarray(vecs[:, : d - 1])}


def _cumulative_chunk(x: torch.Tensor, state: State) -> torch.Tensor:
    """[rows, D-1] float64: column j holds the squared norm of ``x - u`` on the j+1
    smallest principal directions, so column ``D - dim - 1`` is the squared residual
    outside the ``dim`` leading ones."""
    u = torch.from_numpy(np.array(state["u"], dtype=np.float64))
    basis = torch.from_numpy(np.array(state["basis"], dtype=np.float64))
    proj = (x.to(torch.float64) - u) @ basis
    return torch.cumsum(proj * proj, dim=1)


def cumulative(x: torch.Tensor, state: State) -> torch.Tensor:
    """``_cumulative_chunk`` over ``CHUNK``-row chunks from row 0: the row chunks that
    the direct score makes one at a time, so both give the same numbers bit for bit."""
    d = int(np.shape(state["u"])[0])
    out = torch.empty((x.shape[0], d - 1), dtype=torch.float64)
    for i in range(0, x.shape[0], CHUNK):
        out[i:i + CHUNK] = _cumulative_chunk(x[i:i + CHUNK], state)
    return out


def residual_norm(table: torch.Tensor, dim: int) -> torch.Tensor:
    """The residual norm outside the ``dim`` leading directions, read from a
    ``cumulative`` table."""
    return torch.sqrt(table[:, table.shape[1] - dim])


def fit_vim(data: FitData, params: Mapping[str, float]) -> State:
    """The subspace and, for every dim, the id_fit mean residual norm (``alpha``'s
    denominator, from the same ``cumulative`` rows as the queries')."""
    state = _residual_state(data, params, "vim")
    total = np.zeros(int(np.shape(state["u"])[0]) - 1)
    for i in range(0, data.features.shape[0], CHUNK):
        total += torch.sqrt(_cumulative_chunk(data.features[i:i + CHUNK], state)).sum(0).numpy()
    max_logit = data.logits.to(torch.float64).amax(dim=1).numpy()
    return {**state, "mean_norm": total / data.features.shape[0],
            "mean_max_logit": np.array([float(max_logit.mean())])}


def _subspace_key(score: str):
    def key(params: Mapping[str, float], state: State) -> str:
        _dim(params, int(np.shape(state["u"])[0]), score)
        return "cumulative"
    return key


def _table_bytes(rows: int, state: State, key) -> int:
    return rows * (int(np.shape(state["u"])[0]) - 1) * 8


def make_vim(features, logits, head, state: State, key=None) -> tuple:
    """(cumulative table, energy, id_fit mean max-logit, id_fit mean norm per dim)."""
    energy = torch.cat([torch.logsumexp(logits[i:i + CHUNK].to(torch.float64), dim=1)
                        for i in range(0, logits.shape[0], CHUNK)]) if len(logits) else \
        torch.empty(0, dtype=torch.float64)
    return (cumulative(features, state), energy,
            float(np.asarray(state["mean_max_logit"])[0]),
            np.asarray(state["mean_norm"], dtype=np.float64))


def read_vim(table: tuple, params: Mapping[str, float]) -> torch.Tensor:
    cum, energy, max_logit, mean_norm = table
    dim = _dim(params, cum.shape[1] + 1, "vim")
    mean_v = float(mean_norm[cum.shape[1] - dim])
    alpha = max_logit / mean_v if mean_v > 0 else 0.0
    return energy - alpha * residual_norm(cum, dim)


def score_vim(features, logits, head, state: State, params) -> torch.Tensor:
    return _by_chunk(lambda i: read_vim(make_vim(features[i:i + CHUNK], logits[i:i + CHUNK],
                                                 head, state), params), features.shape[0])


def fit_residual(data: FitData, params: Mapping[str, float]) -> State:
    return _residual_state(data, params, "residual")


def make_residual(features, logits, head, state: State, key=None) -> torch.Tensor:
    return cumulative(features, state)


def read_residual(table: torch.Tensor, params: Mapping[str, float]) -> torch.Tensor:
    return -residual_norm(table, _dim(params, table.shape[1] + 1, "residual"))


def score_residual(features, logits, head, state: State, params) -> torch.Tensor:
    return _by_chunk(lambda i: read_residual(make_residual(features[i:i + CHUNK], None, head,
                                                           state), params), features.shape[0])


def _by_chunk(fn, rows: int) -> torch.Tensor:
    """The direct score one ``CHUNK`` of rows at a time: a table's memory for one chunk."""
    outs = [fn(i) for i in range(0, rows, CHUNK)]
    return torch.cat(outs) if outs else torch.empty(0, dtype=torch.float64)


DIM_HELP = "principal-subspace size (0: 1000 if D >= 2048, 512 if D >= 768, else D/2)"


def dim_param(grid: tuple[float, ...]) -> ParamSpec:
    return ParamSpec("dim", 0, 0, 1_000_001, DIM_HELP, kind="int",
                     recommended={"imagenet": 1000}, search_grid=grid)


SUBSPACE_FIT = frozenset({FIT_FEATURES, FIT_HEAD})
VIM = register_feature_score(FeatureScore(
    "vim", "ViM: energy minus a virtual logit (the scaled residual outside the principal "
    "subspace of id_fit)", fit_vim, score_vim, params=(dim_param((256, 512, 1000)),),
    fit_on=SUBSPACE_FIT, reference="Wang et al., CVPR 2022", fit_params=(),
    table=ScoreTable(_subspace_key("vim"), make_vim, read_vim, _table_bytes),
))
RESIDUAL = register_feature_score(FeatureScore(
    "residual", "Residual: minus the norm of the feature outside the principal subspace of "
    "id_fit", fit_residual, score_residual, params=(dim_param((256, 512, 1000)),),
    fit_on=SUBSPACE_FIT, reference="Wang et al., CVPR 2022 (OpenOOD's residual baseline)",
    fit_params=(), table=ScoreTable(_subspace_key("residual"), make_residual, read_residual,
                                    _table_bytes),
))
