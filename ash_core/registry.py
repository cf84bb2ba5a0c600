"""The one registry of shaping methods.

The CLI, the dashboard, the tests and the benchmarks all enumerate it. Adding a
method is one function plus one ``@register_method(...)`` line::

    @register_method("my-method", params=(P_PARAM,), description="...")
    def _my_method(x, *, p, threshold, seed, order=None):
        return ...

A registered function receives fp32-or-lower features ``[N, D]``/``[N, C, H, W]`` and
keyword arguments ``p`` (its percentile parameter, or None for methods without
one), ``threshold`` (a fitted global value, or None for local thresholds), ``seed``
and ``order`` (``shaping.rank_order(x)`` when the caller has it, else None: a
method that ranks units may use it to skip its sort); it must return a new tensor
of the same shape and dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import shaping
from .errors import ParameterError

THRESHOLD_MODES: dict[str, str] = {
    "local": "per-sample threshold: keep each sample's top (100-p)% units (the paper's default)",
    "global": "one threshold: the p-th percentile of all id_fit activations (paper ablation)",
}


@dataclass(frozen=True)
class ParamSpec:
    """A declared numeric parameter: name, default, range [low, high) and a help line."""

    name: str
    default: float
    low: float = 0.0
    high: float = 100.0
    help: str = ""

    def validate(self, value: Any, method: str) -> float:
        """``value`` as a float in [low, high), else a ParameterError naming ``method``."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ParameterError(
                f"{method}: {self.name} must be a number in [{self.low:g}, {self.high:g}), "
                f"got {value!r}."
            ) from None
        if not np.isfinite(v) or not self.low <= v < self.high:
            raise ParameterError(
                f"{method}: {self.name} must be in [{self.low:g}, {self.high:g}) "
                f"({self.help}), got {value!r}."
            )
        return v


ShapeFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class MethodSpec:
    """Everything the tools need to know about one method."""

    name: str
    fn: ShapeFn
    description: str
    params: tuple[ParamSpec, ...] = ()
    thresholds: tuple[str, ...] = ("local",)
    #: "global" threshold or other statistics are fitted on the id_fit split.
    fit: str | None = None
    stochastic: bool = False
    family: str = "baseline"
    reference: str = ""
    #: ranks units per sample under local thresholds, so it can reuse ``order=``.
    ranks: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_p(self) -> bool:
        return any(p.name == "p" for p in self.params)

    @property
    def default_p(self) -> float | None:
        return next((p.default for p in self.params if p.name == "p"), None)

    def uses_order(self, threshold: str) -> bool:
        """Whether a precomputed ``rank_order`` speeds this method up in this mode."""
        return self.ranks and threshold == "local"

    def needs_fit(self, threshold: str) -> bool:
        """Whether this method needs the id_fit split under this threshold mode."""
        return self.fit == "always" or (threshold == "global" and self.fit == "global")


_REGISTRY: dict[str, MethodSpec] = {}

P_ASH = ParamSpec("p", 65.0, 0.0, 100.0, "pruning percentile: units below it are dropped")


def register_method(
    name: str,
    *,
    description: str,
    params: tuple[ParamSpec, ...] = (),
    thresholds: tuple[str, ...] = ("local",),
    fit: str | None = None,
    stochastic: bool = False,
    family: str = "baseline",
    reference: str = "",
    ranks: bool = False,
) -> Callable[[ShapeFn], ShapeFn]:
    """Decorator that registers a shaping function under ``name``."""

    def deco(fn: ShapeFn) -> ShapeFn:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered")
        for t in thresholds:
            if t not in THRESHOLD_MODES:
                raise ValueError(f"unknown threshold mode {t!r}")
        _REGISTRY[name] = MethodSpec(
            name=name, fn=fn, description=description, params=params,
            thresholds=thresholds, fit=fit, stochastic=stochastic, family=family,
            reference=reference, ranks=ranks,
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
    except KeyError:
        raise ParameterError(
            f"unknown method {name!r}; choose one of: {', '.join(_REGISTRY)}."
        ) from None


def check_threshold_mode(spec: MethodSpec, threshold: str) -> str:
    """``threshold`` if it is a known mode that ``spec`` supports, else ParameterError."""
    if threshold not in THRESHOLD_MODES:
        raise ParameterError(
            f"unknown threshold mode {threshold!r}; use 'local' or 'global'."
        )
    if threshold not in spec.thresholds:
        raise ParameterError(
            f"method {spec.name!r} supports threshold mode(s) {', '.join(spec.thresholds)}, "
            f"not {threshold!r}."
        )
    return threshold


@dataclass
class Shaper:
    """A configured method: validated parameters, optionally fitted on id_fit, callable.

    ``fit`` computes what the method needs from ID training features (the global
    threshold, ReAct's clip value) and stores only a float; calling the shaper never
    mutates its input.
    """

    spec: MethodSpec
    p: float | None
    threshold_mode: str = "local"
    seed: int = 0
    fitted_threshold: float | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def needs_fit(self) -> bool:
        return self.spec.needs_fit(self.threshold_mode)

    def fit(self, id_fit_features: torch.Tensor | np.ndarray) -> Shaper:
        """Fit what the method needs on id_fit features (a no-op when it needs nothing)."""
        if self.needs_fit:
            self.fitted_threshold = shaping.percentile_of(id_fit_features, self.p)
        return self

    def __call__(self, x: torch.Tensor, order: torch.Tensor | None = None) -> torch.Tensor:
        """Shape ``x`` (a new tensor). ``order``: ``shaping.rank_order(x)``, if already known."""
        if self.needs_fit and self.fitted_threshold is None:
            raise ParameterError(
                f"{self.name} with threshold={self.threshold_mode!r} needs statistics of the "
                "id_fit split; call .fit(id_fit_features) first (the bundle needs an 'id_fit' "
                "split)."
            )
        return self.spec.fn(x, p=self.p, threshold=self.fitted_threshold, seed=self.seed,
                            order=order)

    def describe(self) -> str:
        """A short label such as ``ash-s p=90 local``."""
        parts = [self.name]
        if self.p is not None:
            parts.append(f"p={self.p:g}")
        if "global" in self.spec.thresholds or self.threshold_mode != "local":
            parts.append(self.threshold_mode)
        return " ".join(parts)


def create_method(
    name: str, p: float | None = None, threshold: str = "local", seed: int = 0
) -> Shaper:
    """Validate parameters in one place and return a ready-to-use (unfitted) shaper.

    ``p`` defaults to the method's declared default; it is ignored (must be None or
    is dropped) for methods without a percentile parameter such as ``none``.
    """
    spec = get_method(name)
    check_threshold_mode(spec, threshold)
    value: float | None = None
    for param in spec.params:
        if param.name == "p":
            value = param.validate(param.default if p is None else p, name)
    return Shaper(spec=spec, p=value, threshold_mode=threshold, seed=check_seed(seed))


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


# --------------------------------------------------------------------------- methods


@register_method("none", description="no shaping: the plain energy/MSP/max-logit baseline")
def _none(x: torch.Tensor, *, p: float | None, threshold: float | None, seed: int,
          order: torch.Tensor | None = None) -> torch.Tensor:
    return x.clone()


@register_method(
    "ash-p", params=(P_ASH,), thresholds=("local", "global"), fit="global", family="ash", ranks=True,
    description="ASH-P: prune units below the p-th percentile, keep survivors' values",
    reference="Djurisic et al., ICLR 2023",
)
def _ash_p(x, *, p, threshold, seed, order=None):
    return shaping.ash_p(x, p, threshold, order=order)


@register_method(
    "ash-b", params=(P_ASH,), thresholds=("local", "global"), fit="global", family="ash", ranks=True,
    description="ASH-B: prune, then set every survivor to s1/k (binarise)",
    reference="Djurisic et al., ICLR 2023",
)
def _ash_b(x, *, p, threshold, seed, order=None):
    return shaping.ash_b(x, p, threshold, order=order)


@register_method(
    "ash-s", params=(P_ASH,), thresholds=("local", "global"), fit="global", family="ash", ranks=True,
    description="ASH-S: prune, then scale survivors by exp(s1/s2)",
    reference="Djurisic et al., ICLR 2023",
)
def _ash_s(x, *, p, threshold, seed, order=None):
    return shaping.ash_s(x, p, threshold, order=order)


@register_method(
    "ash-rand", params=(P_ASH,), thresholds=("local", "global"), fit="global", family="ash", ranks=True,
    stochastic=True,
    description="ASH-RAND: prune, then set survivors to uniform(0, 10) draws (seeded)",
    reference="Djurisic et al., ICLR 2023",
)
def _ash_rand(x, *, p, threshold, seed, order=None):
    return shaping.ash_rand(x, p, threshold, seed=seed, order=order)


@register_method(
    "react", params=(ParamSpec("p", 90.0, 0.0, 100.0, "clip at this percentile of id_fit"),),
    fit="always",
    description="ReAct: clip activations at the p-th percentile of id_fit activations",
    reference="Sun et al., NeurIPS 2021",
)
def _react(x, *, p, threshold, seed, order=None):
    return shaping.react(x, threshold)


@register_method(
    "scale", params=(ParamSpec("p", 85.0, 0.0, 100.0, "percentile defining s2"),), ranks=True,
    description="SCALE: multiply unpruned features by the ASH-S factor exp(s1/s2(p))",
    reference="Xu et al., ICLR 2024",
)
def _scale(x, *, p, threshold, seed, order=None):
    return shaping.scale(x, p, order=order)
