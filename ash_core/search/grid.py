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

from ash_core.bundle import Bundle
from ash_core.engine.exact import EvalResult, Evaluator
from ash_core.errors import BundleError, ParameterError
from ash_core.maths.metrics import higher_is_better
from ash_core.methods import get_method
from ash_core.methods.recommended import benchmark_family, recommended_params
from ash_core.search.engines import (
    RULE,
    CubePoints,
    ExactPoints,
    Params,
    ValidationSplits,
    choose_search_engine,
    validation_splits,
    validation_value,
)
from ash_core.setting import Setting

__all__ = [
    "RULE", "SEARCH_METRICS", "ParamMarks", "Params", "SearchResult",
    "ValidationSplits", "choose_search_engine", "param_marks", "parse_grid_assignment",
    "parse_values", "search", "search_points", "select_first_best", "validation_splits",
    "validation_statement", "validation_value",
]

#: the metrics a search may select by (OpenOOD selects by AUROC)
SEARCH_METRICS = ("auroc", "fpr95")


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
            "threshold": s.threshold_mode, "score": s.score, "fpr_convention": s.convention,
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
    source_points = (CubePoints(ev, base, val, metric, points, **cube_options)
                     if used == "cube" else ExactPoints(ev, base, val, metric))
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
