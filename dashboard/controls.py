"""Parameter controls built from the registry's declarations, and their URL form.

Every parameter a setting takes (``ash_core.setting.declared_params``: the method's, then
those of a score on features it is combined with) becomes a ``Control``: its widget's type,
bounds, step, default and help text come from the ``ParamSpec`` (range, kind, default, the
paper's meaning, recommended values, search grid), so a newly registered method gets its
controls with no dashboard code. The main parameter (p) is the page's slider; the others are
number inputs beside it. No Streamlit and no maths here: the view draws the widgets.

In the URL the non-main values are one key, ``params=NAME:VALUE,NAME:VALUE`` (only values
away from their default), validated by the declaration like the CLI's ``--param``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ash_core import get_method
from ash_core.errors import ParameterError
from ash_core.params import ParamSpec
from ash_core.setting import declared_params


@dataclass(frozen=True)
class Control:
    """One parameter's widget: a number input over ``[min_value, max_value]``."""

    name: str
    #: the method or score that declares it (part of the widget key)
    owner: str
    kind: str  # "int" or "float"
    min_value: float
    max_value: float
    step: float
    default: float
    help: str
    #: the method's main parameter: drawn as the page's slider, not as a number input
    main: bool = False
    #: declared by the score on features the method is combined with
    of_score: bool = False

    @property
    def key(self) -> str:
        """The widget key: one per owner and name, so each method keeps its own value."""
        return f"param:{self.owner}:{self.name}"

    @property
    def label(self) -> str:
        return f"{self.name} ({self.owner})" if self.of_score else self.name

    @property
    def format(self) -> str:
        return "%d" if self.kind == "int" else "%g"

    def widget_value(self, value: float) -> int | float:
        """``value`` as the widget holds it (an int for an integer parameter)."""
        return int(round(value)) if self.kind == "int" else float(value)

    def widget_bounds(self, value: float) -> tuple[int | float, int | float]:
        """The widget's bounds, stretched to hold ``value`` (a valid value from a link may
        lie between the declared open bound and the widget's first step)."""
        low, high = min(self.min_value, value), max(self.max_value, value)
        return self.widget_value(low), self.widget_value(high)


def step_of(q: ParamSpec) -> float:
    """The widget step: 1 for an integer, else a tenth of the default's order of magnitude
    (T=1: 0.1, gamma=0.1: 0.01, alpha=1e-4: 1e-5), or a hundredth of the range."""
    if q.kind == "int":
        return 1.0
    base = abs(q.default) or (q.high - q.low) / 10
    return 10.0 ** (math.floor(math.log10(base)) - 1)


def control(q: ParamSpec, owner: str, main: bool = False, score: bool = False) -> Control:
    """The control of one declared parameter."""
    step = step_of(q)
    if q.kind == "int":
        low = math.floor(q.low) + 1 if q.low_open and float(q.low).is_integer() \
            else math.ceil(q.low)
        high = math.ceil(q.high) - 1
    else:
        low = q.low + step / 10 if q.low_open else q.low
        high = q.high - step
    words = (f"score {owner}: " if score else "") + (q.help or q.name)
    meaning = f"{words}. {q.describe().split(' -- ')[0]}."
    return Control(q.name, owner, q.kind, float(low), float(high), step, float(q.default),
                   meaning, main, score)


def controls_for(method: str, score: str) -> list[Control]:
    """Every parameter of a setting of ``method`` with ``score`` as a control, in
    declaration order (the method's, then the score's on features)."""
    spec = get_method(method)
    own = {q.name for q in spec.params}
    return [control(q, method if q.name in own else score, main=q.name == spec.main_param
                    and q.name == "p", score=q.name not in own)
            for q in declared_params(method, score)]


def extra_controls(method: str, score: str) -> list[Control]:
    """The number inputs: every control but the slider's."""
    return [c for c in controls_for(method, score) if not c.main]


def extra_names(method: str, score: str) -> set[str]:
    return {c.name for c in extra_controls(method, score)}


def params_text(params: Mapping[str, float]) -> str:
    """The URL form, ``k:100,gamma:0.5``."""
    return ",".join(f"{k}:{v:g}" for k, v in params.items())


def read_params(text: str, method: str, score: str) -> tuple[dict[str, float], list[str]]:
    """``params=`` of a link: each declared value validated by its declaration; anything
    else is left out with a note (its default is used)."""
    out: dict[str, float] = {}
    notes: list[str] = []
    declared = {q.name: q for q in declared_params(method, score) if q.name != "p"}
    for item in (t for t in text.split(",") if t):
        name, sep, raw = item.partition(":")
        q = declared.get(name)
        if not sep or q is None:
            valid = ", ".join(declared) or "none"
            notes.append(f"ignored params {item[:40]!r} ({method} with score {score} takes: "
                         f"{valid}; written NAME:VALUE)")
            continue
        try:
            out[name] = q.validate(float(raw), method)
        except (ValueError, ParameterError) as exc:
            why = str(exc) if isinstance(exc, ParameterError) else \
                f"{name} must be a number in {q.range_text}"
            notes.append(f"ignored params {item[:40]!r}: {why}")
    return out, notes
