"""How a search computes its grid: the validation data and the two engines.

``CubePoints``: ONE score cube over the test AND validation splits answers every grid
point (ASH family, ReAct, SCALE); each split's score block [distinct rows, samples] is
sorted once for all points (``metrics.IdScoreBlock``), the splits in parallel threads.
``ExactPoints``: one exact evaluation per point (every other method). Both return the
validation metric (``id_val`` against the pooled ``ood_val`` splits) and the average
test metric of every point, and the full ``EvalResult`` of a chosen point.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ash_core.bundle import Bundle
from ash_core.cube import get_cube, is_cube_method, point_result
from ash_core.cube.build import cube_threads
from ash_core.cube.model import fits_on_id_fit
from ash_core.engine.exact import EvalResult, Evaluator
from ash_core.errors import BundleError, ParameterError
from ash_core.maths.metrics import IdScoreBlock, IdScores
from ash_core.policy import ENGINES
from ash_core.setting import Setting

RULE = ("first best in grid order; a later point replaces it only when strictly better "
        "(OpenOOD v1.5)")

Params = dict[str, float]


# --------------------------------------------------------------------------- validation data


@dataclass(frozen=True)
class ValidationSplits:
    """What a search validates on: the ID validation split and the OOD validation splits."""

    id_val: str
    ood_val: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [self.id_val, *self.ood_val]

    def describe(self) -> str:
        return f"id_val {self.id_val!r} vs ood_val {', '.join(map(repr, self.ood_val))}"

    def to_dict(self) -> dict[str, Any]:
        return {"id_val": self.id_val, "ood_val": list(self.ood_val), "rule": RULE}


def validation_splits(bundle: Bundle) -> ValidationSplits:
    """The bundle's validation splits, or a BundleError that says how to add them."""
    missing = [role for role, ok in (("id_val", bundle.id_val is not None),
                                     ("ood_val", bool(bundle.ood_val_splits))) if not ok]
    if missing:
        raise BundleError(
            f"bundle {bundle.name} has no {' and no '.join(missing)} split: a search selects "
            "parameters on validation data, never on the test sets. Add an 'id_val' split "
            "(held-out ID features) and at least one 'ood_val' split (OOD features not among "
            "the test sets): give them these roles in the extraction config and re-extract, "
            "or write them with write_bundle(..., SplitData(name, 'id_val' | 'ood_val', "
            "features)); docs/bundle-format.md lists the roles."
        )
    return ValidationSplits(bundle.id_val.name, tuple(s.name for s in bundle.ood_val_splits))


def validation_value(id_scores: np.ndarray, ood_scores: Iterable[np.ndarray], metric: str,
                     convention: str = "id") -> float:
    """``metric`` of the ID validation scores against every OOD validation score pooled."""
    pooled = np.concatenate([np.asarray(s).reshape(-1) for s in ood_scores])
    return IdScores(id_scores).metric(pooled, metric, convention)


# --------------------------------------------------------------------------- the engines

def _distinct_rows(blocks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Grid rows whose scores differ from the previous row in some block (a narrow layer
    repeats rows: D = 64 has 64 distinct kept counts in p = 0..99), and for every row the
    position of its representative among them. Equal scores give equal metrics, so the
    metrics of the distinct rows are those of every row, bit for bit."""
    new = np.zeros(len(blocks[0]), dtype=bool)
    new[0] = True
    for block in blocks:
        new[1:] |= np.any(block[1:] != block[:-1], axis=1)
    return np.flatnonzero(new), np.cumsum(new) - 1


class CubePoints:
    """Grid points served by ONE cube over the test AND validation splits: per point only
    the selection metric (validation and test average); full results on request."""

    def __init__(self, ev: Evaluator, base: Setting, val: ValidationSplits, metric: str,
                 points: list[Params], **cube_options: Any):
        # the cube's non-ID list also holds the validation splits; test lookups always
        # pass the test selection explicitly, so id_val is never scored as OOD
        full = ev.with_splits([*ev.ood_names, *val.names])
        self.cube = get_cube(full, base.method, [p["p"] for p in points], base.threshold_mode,
                             base.seed, **cube_options)
        self.ev, self.base, self.val, self.metric = ev, base, val, metric

    def values(self, points: list[Params]) -> tuple[list[float], list[float]]:
        """(validation metric, average test metric) of every point: each split's score
        block [distinct rows, samples] is sorted once for all points (``IdScoreBlock``),
        the splits in parallel (numpy's sorts and searches release the GIL)."""
        blocks, first = self._blocks()
        with ThreadPoolExecutor(max_workers=cube_threads()) as pool:
            validation = pool.submit(self._validation, blocks)
            tests = self._tests(blocks, pool)
            values = validation.result()
        at = [first[self.cube.index(pt["p"])] for pt in points]
        return [float(values[i]) for i in at], [tests[i] for i in at]

    def _blocks(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Every split's scores at the distinct grid rows, and each row's position there."""
        names = [self.cube.id_name, *self.ev.ood_names, *self.val.names]
        blocks = {n: self.cube.splits[n].score(self.base.score) for n in names}
        rows, first = _distinct_rows(list(blocks.values()))
        if rows.size < first.size:
            blocks = {n: block[rows] for n, block in blocks.items()}
        return blocks, first

    def _validation(self, blocks: dict[str, np.ndarray]) -> np.ndarray:
        pooled = np.concatenate([blocks[n] for n in self.val.ood_val], axis=1)
        return IdScoreBlock(blocks[self.val.id_val]).metric(pooled, self.metric,
                                                            self.base.convention)

    def _tests(self, blocks: dict[str, np.ndarray], pool: ThreadPoolExecutor) -> list[float]:
        ids = IdScoreBlock(blocks[self.cube.id_name])
        per_set = np.stack(list(pool.map(
            lambda n: ids.metric(blocks[n], self.metric, self.base.convention),
            self.ev.ood_names)), axis=1)
        # the mean of each row as EvalResult.average takes it: same order, same np.mean
        return [float(np.mean(row)) for row in per_set]

    def result(self, params: Params) -> EvalResult:
        return point_result(self.cube, params["p"], self.base.score, self.base.convention,
                            self.ev.ood_names, self.ev.bundle.groups)


class ExactPoints:
    """Grid points served by one exact evaluation each (validation splits, test sets)."""

    def __init__(self, ev: Evaluator, base: Setting, val: ValidationSplits, metric: str):
        self.ev, self.base, self.val, self.metric = ev, base, val, metric
        self._results: dict[tuple, EvalResult] = {}

    def values(self, points: list[Params]) -> tuple[list[float], list[float]]:
        """(validation metric, average test metric) of every point, one point at a time."""
        return tuple(map(list, zip(*map(self._value, points), strict=True)))

    def _value(self, params: Params) -> tuple[float, float]:
        setting = self.base.with_params(**params).validated()
        shaper = self.ev.shaper(setting)
        split_scores = self.ev.split_scorer(shaper, setting)  # logits or feature scores
        scores = {n: split_scores(n)[1] for n in self.val.names}
        value = validation_value(scores[self.val.id_val], (scores[n] for n in self.val.ood_val),
                                 self.metric, setting.convention)
        result = self._results[tuple(params.items())] = self.ev.evaluate(setting)
        return value, float(result.average[self.metric])

    def result(self, params: Params) -> EvalResult:
        return self._results[tuple(params.items())]


def choose_search_engine(ev: Evaluator, setting: Setting, requested: str = "auto") -> str:
    """"cube" for a method with a score cube (unless "exact" is asked for), else "exact"."""
    if requested not in ENGINES:
        raise ParameterError(f"unknown search engine {requested!r}; use one of "
                             f"{', '.join(ENGINES)}.")
    why = None
    if not is_cube_method(setting.method):
        why = f"{setting.method} has no score cube"
    elif fits_on_id_fit(setting.method, setting.threshold_mode) and ev.bundle.id_fit is None:
        why = f"{setting.label()} needs an id_fit split"
    if requested == "cube" and why:
        raise ParameterError(f"the score cube cannot serve this search: {why}; use "
                             "engine='exact' or 'auto'.")
    return "exact" if requested == "exact" or why else "cube"
