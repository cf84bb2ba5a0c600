"""The one catalogue of shaping methods and the one place their parameters are validated.

The CLI, the dashboard, the tests and the benchmarks all enumerate it. A method
declares every parameter it takes (``ParamSpec``: range, kind, default, the paper's
recommended values, OpenOOD's search grid), what it is fitted on, whether it is
stochastic, its main parameter (the dashboard's slider) and how a grid of it is
computed fast (``grid``: a score-cube strategy such as ``"prefix"``, or ``"exact"`` for one
evaluation per point). Adding a method is one function plus one decorator::

    @register_method("my-method", params=(P_ASH,), description="...")
    def _my_method(x, *, p, cutoff, seed, order=None):
        return ...

A registered function receives fp32-or-lower features ``[N, D]``/``[N, C, H, W]``,
every declared parameter by name (validated floats), ``cutoff`` (the fitted
activation value: a global threshold or ReAct's clip; None when nothing is fitted),
``seed`` and ``order`` (``shaping.rank_order(x)`` when the caller has it, else None).
It returns a new tensor of the same shape and dtype, each row shaped on its own (callers
shape a large split in row blocks, ``Shaper.blocks``); a ``stochastic`` method also takes
``split=`` (the split's name) and ``rows=`` (the index in the split of the first row, the
rows consecutive, or of every row) and draws each row from its own stream of (seed,
split, row) (``ash_core.maths.draws``), whatever the block. A method on logits
(temperature scaling, GEN) declares ``keeps_features=True`` and a ``scorer(logits, **params)``
that replaces the setting's score; a method on the head (DICE) declares a ``fitter``
returning ``(cutoff, state)`` and a ``head_fn(weight, bias, state)``; a method that reads
a stored feature variant in place of each split's features (ODIN) declares ``variant``
(its settings, fixed at extraction, come from the bundle; ``MethodSpec.unavailable`` says
why a bundle cannot serve a method). This module imports no method: the built-in methods
live one family per file in ``ash_core.methods`` and register when that package is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ash_core.errors import ParameterError
from ash_core.features import list_feature_scores
from ash_core.maths import shaping
from ash_core.maths.scores import list_scores
from ash_core.params import ParamSpec

THRESHOLD_MODES: dict[str, str] = {
    "local": "per-sample threshold: keep each sample's top (100-p)% units (the paper's default)",
    "global": "one threshold: the p-th percentile of all id_fit activations (paper ablation)",
}
#: how a grid over the main parameter is computed fast; ``ash_core.cube`` maps each name
#: but "exact" to code: "prefix" = survivors are a prefix of each row's sorted order (the
#: ASH family), "clip" = ReAct-style clipping at a fitted percentile (running sums of the
#: same order), "row-scale" = a per-row factor on the unshaped logits (SCALE), "exact" =
#: one evaluation per grid point
GRID_STRATEGIES = ("prefix", "clip", "row-scale", "exact")

ShapeFn = Callable[..., torch.Tensor]
#: ``fitter(id_fit_features, params, head) -> (cutoff, state)``: what a fitted method
#: computes once; ``head`` is the (weight, bias) pair for methods fitted on it, else None
FitFn = Callable[[torch.Tensor, Mapping[str, float], Any], tuple[float, Any]]
#: ``head_fn(weight, bias, state) -> (weight, bias)``: a method that rewrites the head
HeadFn = Callable[[torch.Tensor, torch.Tensor, Any], tuple[torch.Tensor, torch.Tensor]]


def fit_percentile(features: torch.Tensor, params: Mapping[str, float],
                   head: Any = None) -> tuple[float, None]:
    """The default fit: the ``p``-th percentile of every id_fit activation (no state)."""
    return shaping.percentile_of(features, params["p"]), None


@dataclass(frozen=True)
class MethodSpec:
    """Everything the tools need to know about one method."""

    name: str
    fn: ShapeFn
    description: str
    params: tuple[ParamSpec, ...] = ()
    threshold_modes: tuple[str, ...] = ("local",)
    #: when the fit runs: "global" (under global thresholds only), "always", or None
    fit: str | None = None
    #: what the fit reads (FIT_FEATURES, FIT_LABELS, FIT_HEAD); empty when never fitted
    fit_on: frozenset[str] = frozenset()
    fitter: FitFn = fit_percentile
    stochastic: bool = False
    family: str = "baseline"
    reference: str = ""
    #: ranks units per sample under local thresholds, so it can reuse ``order=``.
    ranks: bool = False
    #: the parameter a slider or a sweep moves (None: the method has none)
    main_param: str | None = None
    #: how a grid over ``main_param`` is computed fast: one of ``GRID_STRATEGIES``
    grid: str = "exact"
    #: the method leaves the features as they are (it may still rewrite the head, as DICE
    #: does, or bring its own score); without a ``head_fn`` its logits are the unshaped ones
    keeps_features: bool = False
    #: a method on logits: ``scorer(logits, **params)`` replaces the setting's score
    scorer: Callable[..., torch.Tensor] | None = None
    #: a method on the head (e.g. DICE): ``head_fn(weight, bias, fitted_state)``
    head_fn: HeadFn | None = None
    #: a score on features (``ash_core.features``) this method stands for, unshaped
    feature_score: str | None = None
    #: a score on logits (``maths.scores``) this method always uses: the named baselines
    #: (energy, msp, maxlogit) are no shaping scored so, the same path as ``none``
    fixed_score: str | None = None
    #: a stored feature variant (``Split.variants``, e.g. "odin") this method reads in
    #: place of each split's features; its settings come from the bundle's manifest
    variant: str | None = None
    #: how to obtain that variant (said when a bundle lacks it)
    variant_hint: str = ""

    def param(self, name: str) -> ParamSpec:
        """The declaration of parameter ``name``, else a ParameterError listing the valid ones."""
        for q in self.params:
            if q.name == name:
                return q
        valid = ", ".join(q.name for q in self.params)
        raise ParameterError(
            f"{self.name}: unknown parameter {name!r}; "
            + (f"its parameters are: {valid}." if valid else "it takes no parameters.")
        )

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(q.name for q in self.params)

    @property
    def defaults(self) -> dict[str, float]:
        return {q.name: float(q.default) for q in self.params}

    @property
    def has_p(self) -> bool:
        return "p" in self.param_names

    @property
    def default_p(self) -> float | None:
        return self.defaults.get("p")

    def uses_order(self, threshold_mode: str) -> bool:
        """Whether a precomputed ``rank_order`` speeds this method up in this mode."""
        return self.ranks and threshold_mode == "local"

    def needs_fit(self, threshold_mode: str) -> bool:
        """Whether the shaper is fitted on id_fit under this threshold mode (its cutoff)."""
        return self.fit == "always" or (threshold_mode == "global" and self.fit == "global")

    def needs_id_fit(self, threshold_mode: str) -> bool:
        """Whether evaluating this method needs the bundle's id_fit split at all: its shaper
        is fitted there, or it is a score on features fitted there (KNN's bank, ...)."""
        return self.needs_fit(threshold_mode) or self.feature_score is not None

    def unavailable(self, bundle: Any, threshold_mode: str = "local") -> str:
        """Why ``bundle`` cannot serve this method in this threshold mode, in words ("" when
        it can): it lacks the id_fit split the method is fitted on, or the feature variant
        the method reads (on the ID split or an OOD test split). The one rule behind the
        evaluator's errors and the dashboard's offer."""
        if self.needs_id_fit(threshold_mode) and bundle.id_fit is None:
            return ("needs ID training features (an id_fit split), which this bundle lacks; "
                    "re-extract with an id_fit split")
        if self.variant is not None:
            missing = bundle.missing_variant(self.variant)
            if missing and bundle.variant(self.variant) is None:
                return (f"needs the {self.variant!r} feature variant, which this bundle lacks; "
                        f"{self.variant_hint}")
            if missing:
                return (f"needs the {self.variant!r} feature variant, which split(s) "
                        f"{', '.join(missing)} of this bundle lack; {self.variant_hint}")
        return ""

    @property
    def own_score(self) -> str | None:
        """The score this method always uses, None when it takes the setting's: a fixed
        score on logits (``msp``: the MSP baseline), or its own name for a method that is
        a score (on logits, e.g. gen; on features, e.g. knn; ODIN)."""
        if self.fixed_score is not None:
            return self.fixed_score
        return self.name if self.scorer is not None or self.feature_score is not None else None

    def scored_with(self, score: str) -> str:
        """The score this method is evaluated with: its own where it has one (results then
        name it, e.g. score "gen"), else ``score``."""
        return self.own_score or score

    @property
    def scores(self) -> list[str]:
        """The scores this method combines with: its own for a method that scores itself,
        else every score on logits and every score on features (plug-and-play, e.g. ash-s
        then knn)."""
        if self.own_score is not None:
            return [self.own_score]
        return [*list_scores(), *list_feature_scores()]

    def validate_params(self, values: Mapping[str, Any] | None) -> dict[str, float]:
        """Every declared parameter as a validated float (defaults for those not given).

        Unknown names, values out of range, NaN/Inf and wrong kinds are ParameterErrors
        naming this method, the parameter and its valid range.
        """
        values = dict(values or {})
        for name in values:
            self.param(name)
        return {q.name: q.validate(values.get(q.name, q.default), self.name)
                for q in self.params}


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(
    name: str,
    *,
    description: str,
    params: tuple[ParamSpec, ...] = (),
    threshold_modes: tuple[str, ...] = ("local",),
    main_param: str | None = None,
    grid: str = "exact",
    **options: Any,
) -> Callable[[ShapeFn], ShapeFn]:
    """Decorator that registers a shaping function under ``name``.

    ``options`` are further ``MethodSpec`` fields (fit, fit_on, fitter, stochastic,
    family, reference, ranks). ``main_param`` defaults to the first parameter.
    """

    def deco(fn: ShapeFn) -> ShapeFn:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered")
        for t in threshold_modes:
            if t not in THRESHOLD_MODES:
                raise ValueError(f"unknown threshold mode {t!r}")
        if grid not in GRID_STRATEGIES:
            raise ValueError(f"unknown grid strategy {grid!r}; use one of {GRID_STRATEGIES}")
        main = main_param if main_param is not None else (params[0].name if params else None)
        if main is not None and main not in [q.name for q in params]:
            raise ValueError(f"main_param {main!r} is not a declared parameter of {name!r}")
        _REGISTRY[name] = MethodSpec(
            name=name, fn=fn, description=description, params=params,
            threshold_modes=threshold_modes,
            main_param=main, grid=grid, **options,
        )
        return fn

    return deco


def list_methods(family: str | None = None) -> list[str]:
    """Registered method names, in registration order (optionally one family only)."""
    return [n for n, s in _REGISTRY.items() if family is None or s.family == family]


def get_method(name: str) -> MethodSpec:
    """The spec of a registered method; unknown names get a list of the known ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ParameterError(
            f"unknown method {name!r}; choose one of: {', '.join(_REGISTRY)}."
        ) from None


def check_threshold_mode(spec: MethodSpec, threshold_mode: str) -> str:
    """``threshold_mode`` if it is a known mode that ``spec`` supports, else ParameterError."""
    if threshold_mode not in THRESHOLD_MODES:
        raise ParameterError(
            f"unknown threshold mode {threshold_mode!r}; use 'local' or 'global'."
        )
    if threshold_mode not in spec.threshold_modes:
        raise ParameterError(
            f"method {spec.name!r} supports threshold mode(s) {', '.join(spec.threshold_modes)}, "
            f"not {threshold_mode!r}."
        )
    return threshold_mode


#: the seeds a torch.Generator accepts (a signed or unsigned 64-bit integer)
SEED_RANGE = (-(2**63), 2**64 - 1)


def check_seed(seed: Any) -> int:
    """``seed`` as an int if it is an integer a torch generator accepts, else ParameterError."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) \
            or not SEED_RANGE[0] <= int(seed) <= SEED_RANGE[1]:
        raise ParameterError(
            f"seed must be an integer in [-2**63, 2**64 - 1], got {seed!r}; e.g. --seed 0."
        )
    return int(seed)


def setting_label(method: str, params: Mapping[str, float], threshold_mode: str = "local",
                  mode: bool | None = None) -> str:
    """``ash-s p=90 local``: the method, its parameters, and the threshold mode (by default
    only where the method has a choice; ``mode=True`` always). The one label function
    behind ``Setting.label``."""
    spec = get_method(method)
    parts = [method, *(f"{k}={v:g}" for k, v in params.items())]
    if mode is None:
        mode = len(spec.threshold_modes) > 1 or threshold_mode != "local"
    if mode:
        parts.append(threshold_mode)
    return " ".join(parts)


def unchanged(x, *, cutoff, seed, order=None, **params):
    """The shape function of a method that leaves the features as they are (a copy: a
    shaper never returns its input)."""
    return x.clone()
