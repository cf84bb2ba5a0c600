"""Honest parameters: choose a method's parameters on validation splits, OpenOOD-style.

``search(bundle, method)`` evaluates every point of a grid on the bundle's validation
data (``id_val`` as ID against the pooled ``ood_val`` splits as OOD, as OpenOOD's one
OOD validation loader), keeps the first best point in grid order (a later point replaces
it only when strictly better: OpenOOD v1.5 ``hyperparam_search``), and reports the test
metrics at that point next to the *test-optimal* point of the same grid (the best by the
average test metric, same rule) and the gap between the two. The test sets never
influence the choice.

Grids: by default every declared parameter's ``search_grid`` (OpenOOD's; ASH p = 65..95
step 5); a parameter without one stays at its default. Several parameters form a
Cartesian product enumerated as OpenOOD's ``recursive_generator`` does: the **first**
declared parameter varies fastest (GEN: gamma runs through its list for each M).

Engines: a method with a score cube (the ASH family, ReAct, SCALE) is served by ONE cube
over the test and the validation splits together, so one preparation answers every grid
point of both (``benchmarks/bench_search.py``); every other method by one exact
evaluation per point. No Streamlit here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bundle import Bundle
from .cube import get_cube, is_cube_method, point_result
from .cube.model import fits_on_id_fit
from .errors import BundleError, ParameterError
from .evaluation import EvalResult, Evaluator, score_function
from .metrics import IdScoreBlock, IdScores, higher_is_better
from .recommended import benchmark_family, recommended_params
from .registry import get_method
from .setting import Setting

#: the metrics a search may select by (OpenOOD selects by AUROC)
SEARCH_METRICS = ("auroc", "fpr95")
SEARCH_ENGINES = ("auto", "cube", "exact")
RULE = ("first best in grid order; a later point replaces it only when strictly better "
        "(OpenOOD v1.5)")

Params = dict[str, float]


# --------------------------------------------------------------------------- the grid


def parse_values(text: str, what: str) -> list[float]:
    """``START:STOP:STEP`` (STOP inclusive, STEP > 0) or a comma list, as floats."""
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if not step > 0 or stop < start or not math.isfinite(stop - start):
                raise ValueError
            n = int(np.floor((stop - start) / step + 1e-9)) + 1
            return [round(start + i * step, 10) for i in range(n)]
        values = [float(v) for v in text.split(",") if v.strip()]
        if values:
            return values
    except ValueError:
        pass
    raise ParameterError(f"cannot parse the grid of {what} {text!r}; use START:STOP:STEP "
                         "(STOP inclusive, STEP > 0), e.g. p=65:95:5, or a comma list, "
                         "e.g. p=80,85,90.")


def parse_grid_assignment(text: str) -> tuple[str, list[float]]:
    """``"NAME=START:STOP:STEP"`` (the CLI's ``--grid``) as ``(name, values)``."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ParameterError(f"cannot parse --grid {text!r}; use NAME=START:STOP:STEP, "
                             "e.g. --grid p=65:95:5 (`ash-explore methods` lists parameters).")
    return name, parse_values(values.strip(), name)


def search_points(method: str, grid: Mapping[str, Sequence[float]] | None = None
                  ) -> list[Params]:
    """Every validated point of the grid, in OpenOOD's order (first parameter fastest).

    ``grid`` overrides the declared search grid of the parameters it names; the others
    take their declared ``search_grid``, or their default when they declare none.
    Unknown names and out-of-range values are ParameterErrors; repeated values count once.
    """
    spec = get_method(method)
    grid = dict(grid or {})
    for name in grid:
        spec.param(name)  # an unknown name: ParameterError listing the valid ones
    axes = []
    for q in spec.params:
        values = list(grid.get(q.name) or q.search_grid or (q.default,))
        axes.append([q.validate(v, method) for v in dict.fromkeys(values)])
    points: list[list[float]] = [[]]
    for axis in axes:  # the last parameter becomes the outermost loop
        points = [[*point, v] for v in axis for point in points]
    return [dict(zip(spec.param_names, point, strict=True)) for point in points]


def select_first_best(values: Sequence[float], metric: str) -> int:
    """The index OpenOOD's rule picks: the first best value; only a strictly better
    value replaces it (NaN never is best while another value is a number)."""
    if not values:
        raise ParameterError("the search grid is empty.")
    higher = higher_is_better(metric)
    best: int | None = None
    for i, v in enumerate(values):
        if math.isnan(v):
            continue
        if best is None or ((v > values[best]) if higher else (v < values[best])):
            best = i
    best = 0 if best is None else best
    return best


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
            "features)); README, 'Feature bundle format', lists the roles."
        )
    return ValidationSplits(bundle.id_val.name, tuple(s.name for s in bundle.ood_val_splits))


def validation_value(id_scores: np.ndarray, ood_scores: Iterable[np.ndarray], metric: str,
                     convention: str = "id") -> float:
    """``metric`` of the ID validation scores against every OOD validation score pooled."""
    pooled = np.concatenate([np.asarray(s).reshape(-1) for s in ood_scores])
    return IdScores(id_scores).metric(pooled, metric, convention)


# --------------------------------------------------------------------------- the result


@dataclass
class SearchResult:
    """A search's choice, its validation curve and the test metrics at both choices."""

    setting: Setting  # the searched method with its threshold mode, score, convention, seed
    metric: str
    validated_on: ValidationSplits
    points: list[Params]
    validation: list[float]
    test_values: list[float]
    selected_index: int
    optimal_index: int
    test: EvalResult
    test_optimal: EvalResult
    engine: str
    bundle: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def selected(self) -> Params:
        return dict(self.points[self.selected_index])

    @property
    def optimal(self) -> Params:
        return dict(self.points[self.optimal_index])

    @property
    def gap(self) -> float:
        """Test ``metric`` lost by validating instead of peeking at the test sets (>= 0)."""
        opt, sel = self.test_values[self.optimal_index], self.test_values[self.selected_index]
        return float(opt - sel if higher_is_better(self.metric) else sel - opt)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``ash-explore search --format json`` (fractions in [0, 1])."""
        s = self.setting
        return {
            "bundle": self.bundle, "method": s.method, "metric": self.metric,
            "threshold": s.threshold, "score": s.score, "fpr_convention": s.convention,
            "seed": s.seed, "engine": self.engine,
            "selected": self.selected,
            "validated_on": self.validated_on.to_dict(),
            "validation": {
                "value": self.validation[self.selected_index],
                "grid": [{"params": dict(p), "value": v}
                         for p, v in zip(self.points, self.validation, strict=True)],
            },
            "test": self.test.to_dict(),
            "test_optimal": {"params": self.optimal, "test": self.test_optimal.to_dict()},
            "test_grid": [{"params": dict(p), "value": v}
                          for p, v in zip(self.points, self.test_values, strict=True)],
            "gap": {"metric": f"average/{self.metric}", "value": self.gap},
        }


# --------------------------------------------------------------------------- the search

def _distinct_rows(blocks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Grid rows whose scores differ from the previous row in some block (a narrow layer
    repeats rows: D = 64 has 64 distinct kept counts in p = 0..99), and for every row the
    position of its representative among them. Equal scores give equal metrics, so the
    metrics of the distinct rows are those of every row, bit for bit."""
    new = np.ones(len(blocks[0]), dtype=bool)
    new[1:] = False
    for block in blocks:
        new[1:] |= np.any(block[1:] != block[:-1], axis=1)
    return np.flatnonzero(new), np.cumsum(new) - 1


class _CubePoints:
    """Grid points served by ONE cube over the test AND validation splits: per point only
    the selection metric (validation and test average); full results on request."""

    def __init__(self, ev: Evaluator, base: Setting, val: ValidationSplits, metric: str,
                 points: list[Params], **cube_options: Any):
        full = ev.with_ood(ev.ood_names)
        # the cube's non-ID list also holds the validation splits; test lookups always
        # pass the test selection explicitly, so id_val is never scored as OOD
        full.ood_names = [*ev.ood_names, *val.names]
        self.cube = get_cube(full, base.method, [p["p"] for p in points], base.threshold,
                             base.seed, **cube_options)
        self.ev, self.base, self.val, self.metric = ev, base, val, metric

    def values(self, points: list[Params]) -> tuple[list[float], list[float]]:
        """(validation metric, average test metric) of every point: each split's score
        block [distinct rows, samples] is sorted once for all points (``IdScoreBlock``)."""
        b, names = self.base, [self.cube.id_name, *self.ev.ood_names, *self.val.names]
        blocks = {n: self.cube.splits[n].score(b.score) for n in names}
        rows, first = _distinct_rows(list(blocks.values()))
        if rows.size < first.size:
            blocks = {n: block[rows] for n, block in blocks.items()}
        pooled = np.concatenate([blocks[n] for n in self.val.ood_val], axis=1)
        values = IdScoreBlock(blocks[self.val.id_val]).metric(pooled, self.metric, b.convention)
        ids = IdScoreBlock(blocks[self.cube.id_name])
        per_set = np.stack([ids.metric(blocks[n], self.metric, b.convention)
                            for n in self.ev.ood_names], axis=1)
        # the mean of each row as EvalResult.average takes it: same order, same np.mean
        tests = [float(np.mean(row)) for row in per_set]
        at = [first[self.cube.index(pt["p"])] for pt in points]
        return [float(values[i]) for i in at], [tests[i] for i in at]

    def result(self, params: Params) -> EvalResult:
        return point_result(self.cube, params["p"], self.base.score, self.base.convention,
                            self.ev.ood_names)


class _ExactPoints:
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
        fn = score_function(shaper, setting.score)
        scores = {n: fn(self.ev.shaped_logits(shaper, n)).numpy() for n in self.val.names}
        value = validation_value(scores[self.val.id_val], (scores[n] for n in self.val.ood_val),
                                 self.metric, setting.convention)
        result = self._results[tuple(params.items())] = self.ev.evaluate(setting)
        return value, float(result.average[self.metric])

    def result(self, params: Params) -> EvalResult:
        return self._results[tuple(params.items())]


def choose_search_engine(ev: Evaluator, setting: Setting, requested: str = "auto") -> str:
    """"cube" for a method with a score cube (unless "exact" is asked for), else "exact"."""
    if requested not in SEARCH_ENGINES:
        raise ParameterError(f"unknown search engine {requested!r}; use one of "
                             f"{', '.join(SEARCH_ENGINES)}.")
    why = None
    if not is_cube_method(setting.method):
        why = f"{setting.method} has no score cube"
    elif fits_on_id_fit(setting.method, setting.threshold) and ev.bundle.id_fit is None:
        why = f"{setting.label()} needs an id_fit split"
    if requested == "cube" and why:
        raise ParameterError(f"the score cube cannot serve this search: {why}; use "
                             "engine='exact' or 'auto'.")
    return "exact" if requested == "exact" or why else "cube"


def search(
    source: Bundle | Evaluator,
    method: str | Setting,
    grid: Mapping[str, Sequence[float]] | None = None,
    metric: str = "auroc",
    *,
    ood: Iterable[str] | None = None,
    engine: str = "auto",
    **cube_options: Any,
) -> SearchResult:
    """Select ``method``'s parameters on the validation splits (see the module doc).

    ``method``: a name or a ``Setting`` (its threshold mode, score, convention and seed
    are kept; its parameters are replaced by the grid's). ``ood``: the test OOD sets
    (default: all, or an Evaluator's own selection). ``cube_options``: ``cache_dir``, ``use_cache``, ``progress`` of
    ``get_cube``. A bundle without validation splits is a BundleError saying how to add
    them; an unknown metric or parameter a ParameterError.
    """
    if metric not in SEARCH_METRICS:
        raise ParameterError(f"unknown search metric {metric!r}; use one of "
                             f"{', '.join(SEARCH_METRICS)}.")
    base = (method if isinstance(method, Setting) else Setting(method)).validated()
    points = search_points(base.method, grid)
    if isinstance(source, Evaluator):  # keep its OOD selection unless ``ood`` names one
        ev = source if ood is None else source.with_ood(ood)
    else:
        ev = Evaluator(source, ood)
    if not ev.ood_names:
        raise ParameterError(f"bundle {ev.bundle.name} has no OOD test split selected; "
                             "select at least one.")
    val = validation_splits(ev.bundle)
    used = choose_search_engine(ev, base, engine)
    source_points = (_CubePoints(ev, base, val, metric, points, **cube_options)
                     if used == "cube" else _ExactPoints(ev, base, val, metric))
    values, test_values = source_points.values(points)
    chosen = select_first_best(values, metric)
    optimal = select_first_best(test_values, metric)
    return SearchResult(
        setting=base, metric=metric, validated_on=val, points=points,
        validation=[float(v) for v in values], test_values=[float(v) for v in test_values],
        selected_index=chosen, optimal_index=optimal,
        test=source_points.result(points[chosen]),
        test_optimal=source_points.result(points[optimal]), engine=used, bundle=ev.bundle.name,
    )


# --------------------------------------------------------------------------- front-end helpers


@dataclass(frozen=True)
class ParamMarks:
    """What the dashboard marks on a method's parameter axis: the validated choice, the
    test-optimal one, the paper's recommended value for the bundle's family, and why
    there is no validated choice (None when there is one)."""

    validated: Params | None
    test_optimal: Params | None
    recommended: Params
    family: str | None
    result: SearchResult | None = None
    missing: str | None = None


def param_marks(source: Bundle | Evaluator, setting: Setting,
                grid: Mapping[str, Sequence[float]] | None = None, metric: str = "auroc",
                *, ood: Iterable[str] | None = None, **cube_options: Any) -> ParamMarks:
    """The marks of ``setting``'s method on ``source``: a bundle without validation splits
    gets no validated mark (``missing`` says why) instead of an error."""
    bundle = source.bundle if isinstance(source, Evaluator) else source
    family = benchmark_family(bundle)
    recommended = recommended_params(setting.method, family)
    try:
        validation_splits(bundle)
    except BundleError as exc:
        return ParamMarks(None, None, recommended, family, missing=str(exc))
    result = search(source, setting, grid, metric, ood=ood, **cube_options)
    return ParamMarks(result.selected, result.optimal, recommended, family, result)


def validation_statement(result: SearchResult) -> str:
    """One sentence for exports: which parameters were validated, on what, and how."""
    params = " ".join(f"{k}={v:g}" for k, v in result.selected.items()) or "no parameters"
    optimal = " ".join(f"{k}={v:g}" for k, v in result.optimal.items()) or "no parameters"
    m = result.metric.upper()
    return (f"{result.setting.method} {params} was chosen on {result.validated_on.describe()} "
            f"by {m} over {len(result.points)} grid points ({RULE}); the test sets were not "
            f"used. Test-optimal on the same grid: {optimal} (gap {100 * result.gap:.2f} "
            f"{m} points).")
