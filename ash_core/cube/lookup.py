"""One grid point of a cube as an ``EvalResult``: a lookup plus metrics, no pass over features."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ash_core.cube.model import ScoreCube
from ash_core.engine.result import EvalResult
from ash_core.errors import ParameterError
from ash_core.maths.metrics import IdScores, check_convention
from ash_core.maths.scores import get_score
from ash_core.setting import Setting


def _ood_names(cube: ScoreCube, ood: Iterable[str] | None) -> list[str]:
    names = cube.ood_names if ood is None else list(ood)
    unknown = [n for n in names if n not in cube.splits or n == cube.id_name]
    if unknown:
        raise ParameterError(
            f"unknown OOD split(s) {', '.join(map(repr, unknown))} in this cube; available: "
            f"{', '.join(cube.ood_names)}."
        )
    if not names:
        raise ParameterError("no OOD sets to evaluate; select at least one OOD split.")
    return names


def point_result(
    cube: ScoreCube,
    p: float,
    score: str = "energy",
    convention: str = "id",
    ood: Iterable[str] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> EvalResult:
    """The ``EvalResult`` of one grid point (the type ``Evaluator.evaluate`` returns, with
    ``id_scores`` / ``ood_scores`` and ``engine="cube"``); ``groups`` are the bundle's OOD
    groups (``Bundle.groups``), averaged as the exact engine does."""
    check_convention(convention)
    get_score(score)
    names = _ood_names(cube, ood)
    j = cube.index(p)
    id_scores = np.asarray(cube.splits[cube.id_name].score(score, j))
    ood_scores = {n: np.asarray(cube.splits[n].score(score, j)) for n in names}
    ids = IdScores(id_scores)
    at = float(cube.grid[j])
    return EvalResult(
        bundle=cube.bundle_name,
        setting=Setting(cube.method, {"p": at}, cube.threshold_mode, score, convention, cube.seed),
        id_accuracy=cube.id_accuracy(p),
        ood={n: ids.metrics(s, convention) for n, s in ood_scores.items()},
        cutoff=None if cube.cutoffs is None
        else float(cube.cutoffs[j]),
        id_scores=id_scores,
        ood_scores=ood_scores,
        groups={g: tuple(m) for g, m in (groups or {}).items()},
        engine="cube",
    )


def point_metrics(cube: ScoreCube, p: float, score: str = "energy", convention: str = "id",
                  ood: Iterable[str] | None = None) -> dict[str, Any]:
    """``point_result(...).to_dict()``: the dict a sweep row is read from."""
    return point_result(cube, p, score, convention, ood).to_dict()
