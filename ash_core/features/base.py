"""Scores on features, fitted once on id_fit: the catalogue and the shared maths.

A ``FeatureScore`` declares its parameters (``ParamSpec``), what its fit reads
(``fit_on``: id_fit features, id_fit labels, the linear head), a ``fit`` returning its
state as a dict of numpy arrays (class means, a precision matrix, a principal subspace,
a neighbour bank: all that ``ash_core.engine.fit`` caches, never pickled) and a ``score``
mapping (features, logits, state) to one score per row, higher = more in-distribution.
Scores compose with any shaping: the engines shape id_fit and the queries with the same
method, then fit and score here (``ash_core.engine.fit``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ash_core.errors import ParameterError
from ash_core.params import ParamSpec

#: what a fit may read (also ``MethodSpec.fit_on``'s vocabulary)
FIT_FEATURES, FIT_LABELS, FIT_HEAD = "id_fit features", "id_fit labels", "head"
#: rows per chunk where a score builds an [rows, D] or [rows, N_fit] intermediate
CHUNK = 4096

State = dict[str, np.ndarray]


@dataclass(frozen=True)
class FitData:
    """What a fit may read: id_fit features (fp32, already shaped by the setting's method),
    their labels (None when the split has none), the head (possibly rewritten, e.g. by
    DICE) and the id_fit logits under that head."""

    features: torch.Tensor
    labels: np.ndarray | None
    weight: torch.Tensor
    bias: torch.Tensor
    #: ``shared(name, make)``: ``make()`` once for every fit on this data, whatever the
    #: parameters (ViM's eigendecomposition serves every dim); the engine keeps it
    shared: Callable[[str, Callable[[], Any]], Any] = field(default=lambda name, make: make(),
                                                           compare=False, repr=False)

    @property
    def logits(self) -> torch.Tensor:
        return torch.addmm(self.bias, self.features, self.weight.T)


FitFn = Callable[[FitData, Mapping[str, float]], State]
#: ``score(features [N, D] fp32, logits [N, C], head (weight, bias), state, params)``
ScoreFn = Callable[..., torch.Tensor]


#: a split's table is made only up to this size; a larger one (a 2048-d 100k-row split's
#: ViM table, 1.6 GB) is not made: that split is scored on its own, one chunk at a time
TABLE_MAX_BYTES = 256 * 2**20


@dataclass(frozen=True)
class ScoreTable:
    """Per split, the work that many values of a parameter share, made once and read per
    value: ``key(params, state)`` names the table that serves ``params`` (None: score
    them on their own), ``make(features, logits, head, state, key)`` makes it and
    ``read(table, params)`` gives the scores, bit for bit those of ``score`` (KNN: the
    distances to the first 200 neighbours serve every k <= 200; ViM: the running sums of
    squared projections serve every dim). ``nbytes(rows, state, key)``: a split's table
    size; above ``TABLE_MAX_BYTES`` the split is scored on its own."""

    key: Callable[[Mapping[str, float], State], Hashable | None]
    make: Callable[..., Any]
    read: Callable[[Any, Mapping[str, float]], torch.Tensor]
    nbytes: Callable[[int, State, Hashable], int]


@dataclass(frozen=True)
class FeatureScore:
    name: str
    description: str
    fit: FitFn
    score: ScoreFn
    params: tuple[ParamSpec, ...] = ()
    fit_on: frozenset[str] = frozenset({FIT_FEATURES})
    reference: str = ""
    extra: dict = field(default_factory=dict)
    #: the parameters the fit depends on (None: all of them); settings that differ only
    #: in the others share one fitted state (KNN's bank does not depend on k)
    fit_params: tuple[str, ...] | None = None
    table: ScoreTable | None = None

    def fit_key(self, params: Mapping[str, float]) -> dict[str, float]:
        """The parameter values the fitted state depends on."""
        return dict(params) if self.fit_params is None else \
            {k: v for k, v in params.items() if k in self.fit_params}

    @property
    def needs_labels(self) -> bool:
        return FIT_LABELS in self.fit_on


_SCORES: dict[str, FeatureScore] = {}


def register_feature_score(spec: FeatureScore) -> FeatureScore:
    if spec.name in _SCORES:
        raise ValueError(f"feature score {spec.name!r} is already registered")
    _SCORES[spec.name] = spec
    return spec


def list_feature_scores() -> list[str]:
    """Names of the scores on features (fitted on id_fit), in registration order."""
    return list(_SCORES)


def get_feature_score(name: str) -> FeatureScore | None:
    """The feature score ``name``, or None when ``name`` is not one."""
    return _SCORES.get(name)


# ------------------------------------------------------------------------ shared maths

def rows64(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """``x`` as a float64 numpy [N, D] array (a copy; never a view of the caller's data)."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.array(arr.reshape(arr.shape[0], -1), dtype=np.float64)


def pinvh(sym: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of a symmetric PSD matrix by eigendecomposition; eigenvalues at or
    below ``D * eps * max`` count as zero (scipy's ``pinvh`` default, which sklearn's
    ``EmpiricalCovariance.precision_`` uses), so a degenerate covariance (constant units,
    fewer samples than units) gets a finite precision."""
    vals, vecs = np.linalg.eigh(sym)
    cut = sym.shape[0] * np.finfo(np.float64).eps * max(float(np.abs(vals).max(initial=0)), 0.0)
    inv = np.where(vals > cut, 1.0 / np.where(vals > cut, vals, 1.0), 0.0)
    return (vecs * inv) @ vecs.T


def check_labels(data: FitData, score: str) -> np.ndarray:
    if data.labels is None:
        raise ParameterError(f"score {score!r} needs class labels on the id_fit split, which "
                             "has none; choose a score that is not class-conditional or "
                             "re-extract id_fit with labels.")
    return np.asarray(data.labels, dtype=np.int64)


def class_means(x: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
    """(means [C, D], present [C] bool): the mean of every class present in id_fit (a class
    with no id_fit sample has no mean and is left out of the class-conditional scores)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    sums = np.zeros((num_classes, x.shape[1]))
    np.add.at(sums, labels, x)
    present = counts > 0
    means = sums / np.where(present, counts, 1.0)[:, None]
    return means, present


def chunked(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn`` over row chunks of ``x``, concatenated (bounds intermediate memory)."""
    outs = [fn(x[i:i + CHUNK]) for i in range(0, x.shape[0], CHUNK)]
    return torch.cat(outs) if outs else torch.empty(0, dtype=torch.float64)
