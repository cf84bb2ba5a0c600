"""The score cube's data model: ``SplitCube`` / ``ScoreCube``, read-only freezing, lookups.

A ``ScoreCube`` holds, for one (method, threshold mode, p grid, seed) and every split
of a bundle, the energy / gap / max-logit scores and the argmax predictions at every
grid p, as ``[P, N]`` arrays, plus the unshaped scores ``[1, N]``. ``FIELD_DTYPES`` is
the one description of that layout: the builders, the cache file format and the
memory estimate of the engine policy all read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ash_core.errors import ParameterError
from ash_core.maths.scores import list_scores
from ash_core.maths.shaping import check_percentile
from ash_core.methods import get_method, list_methods

#: Stored per split and grid point, with their dtypes. ``gap`` = logsumexp - max logit,
#: so that MSP = exp(-gap) keeps float64 resolution near 1 (as ``scores.msp_score``).
FIELD_DTYPES: dict[str, np.dtype] = {
    "energy": np.dtype(np.float32),
    "gap": np.dtype(np.float32),
    "maxlogit": np.dtype(np.float32),
    "pred": np.dtype(np.int32),
}
FIELDS: tuple[str, ...] = tuple(FIELD_DTYPES)
#: ASH variants of the "prefix" strategy, with their native-kernel slot.
CUBE_METHODS: dict[str, int] = {"ash-p": 0, "ash-s": 1, "ash-b": 2, "ash-rand": 3}
#: The grid strategies this package implements (see ``strategies``); each method declares
#: its own in the registry (``MethodSpec.grid``), the one catalogue: "prefix" = survivors
#: are a prefix of each row's sorted order (native kernel or torch), "clip" = ReAct (units
#: above the clip are a prefix: clipped logits from the same running sums), "row-scale" =
#: SCALE (a per-row factor on the unshaped logits).
CUBE_STRATEGIES: tuple[str, ...] = ("prefix", "clip", "row-scale")


def grid_strategy(method: str) -> str | None:
    """The cube strategy ``method`` declares, or None (unknown method, or "exact" grid)."""
    if method not in list_methods():
        return None
    grid = get_method(method).grid
    return grid if grid in CUBE_STRATEGIES else None


def is_cube_method(method: str) -> bool:
    """Whether ``method`` has a score cube (its registry declaration names a cube strategy)."""
    return grid_strategy(method) is not None


def fits_on_id_fit(method: str, threshold_mode: str) -> bool:
    """Whether the cube of ``method`` depends on id_fit (global thresholds, ReAct's clip)."""
    return threshold_mode == "global" or grid_strategy(method) == "clip"


def empty_fields(*shape: int) -> tuple[np.ndarray, ...]:
    """Uninitialised arrays of every field, in ``FIELDS`` order, of the given shape."""
    return tuple(np.empty(shape, dt) for dt in FIELD_DTYPES.values())


def msp_from_gap(gap: np.ndarray) -> np.ndarray:
    """MSP = exp(-gap), computed as ``1 / (1 + expm1(gap))`` in float64: the way
    ``scores.msp_score``'s softmax rounds it (1 / the float64 sum of exp(x - max)), so the
    ties at exactly 1.0 of saturated rows are the same as on the exact path."""
    return 1.0 / (1.0 + np.expm1(np.asarray(gap, dtype=np.float64)))


@dataclass
class SplitCube:
    """Scores of one split at every grid point: float32 arrays ``[P, N]``, pred int32.

    ``gap`` is logsumexp - max logit; ``msp`` (float64) is derived from it.
    """

    energy: np.ndarray
    gap: np.ndarray
    maxlogit: np.ndarray
    pred: np.ndarray

    @property
    def msp(self) -> np.ndarray:
        """Maximum softmax probability ``[P, N]`` (float64, like ``scores.msp_score``)."""
        return msp_from_gap(self.gap)

    def score(self, name: str, j: int | None = None) -> np.ndarray:
        """Scores ``[P, N]``, or ``[N]`` at grid row ``j``."""
        if name not in ("energy", "msp", "maxlogit"):
            raise ParameterError(
                f"unknown score {name!r}; choose one of: {', '.join(list_scores())}."
            )
        if name == "msp":
            return msp_from_gap(self.gap if j is None else self.gap[j])
        arr = getattr(self, name)
        return arr if j is None else arr[j]

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f).nbytes for f in FIELDS)


@dataclass
class ScoreCube:
    """One method's scores and predictions at every grid p, for every split.

    ``splits[name]`` holds ``[P, N]`` arrays in grid order; ``unshaped[name]`` the
    ``[1, N]`` scores of the plain head (for the "unshaped" accuracy and baselines).
    ``backend`` says which backend computed it ("native" C kernel or "torch").
    """

    method: str
    threshold_mode: str
    grid: np.ndarray
    seed: int
    bundle_hash: str
    bundle_name: str
    id_name: str
    ood_names: list[str]
    splits: dict[str, SplitCube]
    unshaped: dict[str, SplitCube]
    labels: np.ndarray | None = None
    cutoffs: np.ndarray | None = None
    backend: str = "native"
    meta: dict[str, Any] = field(default_factory=dict)

    def freeze(self) -> ScoreCube:
        """Make every array read-only: cubes are shared between callers (dashboard sessions)."""
        for group in (self.splits, self.unshaped):
            for sc in group.values():
                for name in FIELDS:
                    getattr(sc, name).flags.writeable = False
        for arr in (self.grid, self.labels, self.cutoffs):
            if arr is not None:
                arr.flags.writeable = False
        return self

    def has(self, p: float) -> bool:
        """Whether ``p`` is a grid point (exact up to 1e-9)."""
        return bool(np.any(np.abs(self.grid - float(p)) <= 1e-9))

    def index(self, p: float) -> int:
        """Row of the grid point ``p`` (exact up to 1e-9); clear error if not in the grid."""
        check_percentile(p)
        hits = np.flatnonzero(np.abs(self.grid - float(p)) <= 1e-9)
        if hits.size == 0:
            near = self.grid[np.argsort(np.abs(self.grid - float(p)))[:3]]
            raise ParameterError(
                f"p={p:g} is not in the cube grid of {self.method} ({self.grid.size} points "
                f"from {self.grid.min():g} to {self.grid.max():g}); nearest: "
                f"{', '.join(f'{v:g}' for v in sorted(near))}."
            )
        return int(hits[0])

    def scores(self, split: str, p: float, score: str = "energy") -> np.ndarray:
        """Scores ``[N]`` of one split at grid point ``p``."""
        return self._split(split).score(score, self.index(p))

    def preds(self, split: str, p: float) -> np.ndarray:
        """Argmax predictions ``[N]`` of one split at grid point ``p``."""
        return self._split(split).pred[self.index(p)]

    def _split(self, split: str) -> SplitCube:
        try:
            return self.splits[split]
        except KeyError:
            raise ParameterError(
                f"split {split!r} is not in this cube; it has: {', '.join(self.splits)}."
            ) from None

    def id_accuracy(self, p: float) -> dict[str, float | None]:
        """ID top-1 accuracy shaped at ``p`` and unshaped (None without labels)."""
        if self.labels is None:
            return {"shaped": None, "unshaped": None}
        labels = self.labels
        shaped = self.preds(self.id_name, p)
        return {
            "shaped": float(np.mean(shaped == labels)),
            "unshaped": float(np.mean(self.unshaped[self.id_name].pred[0] == labels)),
        }

    def accuracy_curve(self) -> np.ndarray | None:
        """ID accuracy at every grid point ``[P]`` (None without labels)."""
        if self.labels is None:
            return None
        return (self.splits[self.id_name].pred == self.labels[None, :]).mean(axis=1)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.splits.values()) + \
            sum(s.nbytes for s in self.unshaped.values())
