"""Declared method parameters: name, default, range, kind, the paper's values, a search grid.

Every parameter a registered method takes is a ``ParamSpec``; ``registry.create_method``
validates each value against it, so a bad value is refused in one place with the
method, the parameter and the valid range in the message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from ash_core.errors import ParameterError

KINDS = ("float", "int")


@dataclass(frozen=True)
class ParamSpec:
    """A numeric parameter in ``[low, high)`` (``(low, high)`` when ``low_open``).

    ``recommended`` maps a benchmark family (e.g. ``"imagenet"``, ``"cifar10"``) to the
    value its paper recommends; ``search_grid`` is OpenOOD's hyper-parameter search grid.
    The first four attributes may be given by position: ``ParamSpec(name, default, low,
    high)``.
    """

    name: str
    default: float
    low: float = 0.0
    high: float = 100.0
    help: str = ""
    kind: str = "float"
    recommended: Mapping[str, float] = field(default_factory=dict, compare=False)
    search_grid: tuple[float, ...] = ()
    low_open: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"parameter {self.name!r}: kind must be one of {KINDS}")
        object.__setattr__(self, "recommended", MappingProxyType(dict(self.recommended)))
        object.__setattr__(self, "search_grid", tuple(self.search_grid))

    def __hash__(self) -> int:  # ``recommended`` is a mapping: hash the rest
        return hash((self.name, self.default, self.low, self.high, self.kind,
                     self.search_grid, self.low_open))

    @property
    def range_text(self) -> str:
        """The valid range in interval notation, e.g. ``[0, 100)``."""
        kind = " (an integer)" if self.kind == "int" else ""
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}){kind}"

    def contains(self, value: float) -> bool:
        """Whether a finite number lies in the declared range (the kind is not checked)."""
        above = value > self.low if self.low_open else value >= self.low
        return above and value < self.high

    def validate(self, value: Any, method: str) -> float:
        """``value`` as a float (an integral one for ``kind="int"``) in range, else a
        ParameterError naming ``method``, the parameter and the valid range."""
        what = f" ({self.help})" if self.help else ""
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer,
                                                             np.floating)):
            raise ParameterError(f"{method}: {self.name} must be a number in "
                                 f"{self.range_text}{what}, got {value!r}.")
        try:
            v = float(value)
        except OverflowError:  # an integer beyond the float range (a JSON recipe may hold one)
            v = math.inf if value > 0 else -math.inf
        if not math.isfinite(v) or not self.contains(v):
            raise ParameterError(f"{method}: {self.name} must be in {self.range_text}{what}, "
                                 f"got {value!r}.")
        if self.kind == "int" and not v.is_integer():
            raise ParameterError(f"{method}: {self.name} must be an integer in "
                                 f"{self.range_text}, got {value!r}.")
        return v

    def describe(self) -> str:
        """One line for ``ash-explore methods``: range, default, paper values, search grid."""
        parts = [f"{self.name} in {self.range_text}, default {self.default:g}"]
        if self.recommended:
            parts.append("recommended " + ", ".join(f"{k} {v:g}"
                                                    for k, v in self.recommended.items()))
        if self.search_grid:
            parts.append("search grid " + ",".join(f"{v:g}" for v in self.search_grid))
        return "; ".join(parts) + (f" -- {self.help}" if self.help else "")


def parse_assignment(text: str) -> tuple[str, float]:
    """``"NAME=VALUE"`` (the CLI's ``--param``) as ``(name, float(value))``."""
    name, sep, value = text.partition("=")
    name = name.strip()
    try:
        if not sep or not name:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise ParameterError(
            f"cannot parse --param {text!r}; use NAME=VALUE with a number, e.g. --param p=90 "
            "(`ash-explore methods` lists every parameter)."
        ) from None


def merge_p(params: Mapping[str, Any] | None, p: Any) -> dict[str, Any]:
    """``params`` with the ``p=`` shorthand folded in; both given and different: an error."""
    merged = dict(params or {})
    if p is not None:
        if "p" in merged and merged["p"] != p:
            raise ParameterError(
                f"p is given twice ({p!r} and params p={merged['p']!r}); give it once."
            )
        merged["p"] = p
    return merged


def percent_grid(start: float, stop: float, step: float) -> tuple[float, ...]:
    """``start..stop`` (inclusive) in ``step``s, as floats."""
    return tuple(float(v) for v in np.arange(start, stop + step / 2, step))
