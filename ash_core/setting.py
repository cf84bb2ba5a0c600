"""``Setting``: the one description of what is evaluated (method, parameters, modes),
and which scores a method combines with (one parameter list split between a shaping
method and a score on features: ``ash-s`` then ``knn``).

Evaluate, sweep, the CLI and the dashboard describe a setting with this one frozen
value: validated through the registry, labelled by ``label()`` and serialised by
``to_dict()``::

    s = Setting("ash-s", {"p": 90}).validated()   # every parameter checked, defaults filled
    s.label()                                     # 'ash-s p=90 local'
    s.to_dict()                                   # JSON-ready
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from ash_core.errors import ParameterError
from ash_core.features import get_feature_score, list_feature_scores
from ash_core.maths.metrics import check_convention
from ash_core.maths.scores import list_scores
from ash_core.methods import (
    Shaper,
    check_seed,
    check_threshold_mode,
    create_method,
    get_method,
    list_methods,
    setting_label,
)
from ash_core.params import ParamSpec

# ------------------------------------------------------------------ plug-and-play scores

def compatible_scores(method: str) -> list[str]:
    """The scores ``method`` can be evaluated with (``MethodSpec.scores``), for a UI."""
    return get_method(method).scores


def check_score_name(score: str) -> str:
    """``score`` if it is a score on logits or on features, else ParameterError."""
    known = [*list_scores(), *list_feature_scores()]
    if score not in known:
        raise ParameterError(f"unknown score {score!r}; choose one of: {', '.join(known)}.")
    return score


def own_score_reason(method: str) -> str:
    """Why the setting's score does not apply to ``method`` ("" when it does): the method
    scores itself. The one rule behind the CLI's refusal of ``--method knn --score msp``
    and the dashboard's disabled score box."""
    spec = get_method(method)
    own = spec.own_score
    if own is None:
        return ""
    takers = ", ".join(m for m in list_methods() if get_method(m).own_score is None)
    if spec.fixed_score is not None:
        return (f"{method} is the unshaped baseline scored by {own}; for another score pick "
                f"none (or a shaping method) with that score; the methods that take a "
                f"score: {takers}")
    if spec.feature_score is not None:
        return (f"{method} is a score on features of its own; to shape first and then score "
                f"by {own}, pick a shaping method with score {own}; the methods that take a "
                f"score: {takers}")
    return (f"{method} brings its own score on logits; the methods that take a score: "
            f"{takers}")


def resolve_score(method: str, score: str | None) -> str:
    """The score a setting of ``method`` uses when ``score`` is asked for (None: the
    default, the method's own or energy). A score the method cannot take is a
    ParameterError naming what applies (``own_score_reason``), never silently replaced."""
    spec = get_method(method)
    if score is None:
        return spec.own_score or "energy"
    if spec.own_score is not None and score == spec.own_score:
        return score
    check_score_name(score)
    why = own_score_reason(method)
    if why:
        raise ParameterError(f"--score {score} does not apply to --method {method}: {why}. "
                             "Leave --score out.")
    return score


def score_unavailable(bundle: Any, score: str) -> str:
    """Why ``bundle`` cannot serve ``score`` ("" when it can): a score on features is
    fitted on the id_fit split (and a class-conditional one on its labels)."""
    feature = get_feature_score(score)
    if feature is None:
        return ""
    if bundle.id_fit is None:
        return (f"score {score} is fitted on ID training features (an id_fit split), which "
                "this bundle lacks")
    if feature.needs_labels and bundle.id_fit.labels is None:
        return f"score {score} needs class labels on the id_fit split, which has none"
    return ""


def declared_params(method: str, score: str) -> tuple[ParamSpec, ...]:
    """Every parameter a setting of ``method`` with ``score`` takes: the method's, then
    those of the score on features it is combined with (none when the method scores
    itself: its own are then the score's). What a UI builds its controls from."""
    spec = get_method(method)
    feature = get_feature_score(score) if spec.own_score is None else None
    return (*spec.params, *(feature.params if feature is not None else ()))


def split_params(method: str, score: str, values: Mapping[str, Any] | None
                 ) -> tuple[dict[str, float], dict[str, float]]:
    """One parameter mapping split into (the method's, the score's), each validated with
    defaults filled. A plug-and-play setting (``ash-s`` then ``knn``) holds both in one
    mapping (``{"p": 90, "k": 50}``); for a method that is itself a score both are its own.
    A name neither declares is a ParameterError listing the valid ones."""
    spec = get_method(method)
    values = dict(values or {})
    feature = get_feature_score(score) if spec.own_score is None else None
    if feature is None or not feature.params:
        own = spec.validate_params(values)
        return own, (own if spec.feature_score is not None else {})
    names = {q.name for q in feature.params}
    clash = names & set(spec.param_names)
    if clash:
        raise ParameterError(f"{method} and score {score} both take {sorted(clash)}; this "
                             "combination cannot be set from one parameter list.")
    unknown = set(values) - names - set(spec.param_names)
    if unknown:
        valid = ", ".join([*spec.param_names, *sorted(names)]) or "none"
        raise ParameterError(f"{method} with score {score}: unknown parameter(s) "
                             f"{', '.join(sorted(unknown))}; valid: {valid}.")
    own = spec.validate_params({k: v for k, v in values.items() if k not in names})
    theirs = {q.name: q.validate(values.get(q.name, q.default), f"score {score}")
              for q in feature.params}
    return own, theirs


@dataclass(frozen=True)
class Setting:
    """A method with its parameters, the threshold mode, the score, the FPR convention and
    the seed. ``threshold_mode`` is the mode string ("local"/"global"), never a number.

    Construction does not validate (so a front end can hold what a user typed);
    ``validated()`` returns the checked, defaults-filled setting or raises ParameterError.
    """

    method: str
    params: Mapping[str, float] = field(default_factory=dict)
    threshold_mode: str = "local"
    score: str = "energy"
    convention: str = "id"
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params or {})))

    def __hash__(self) -> int:
        return hash((self.method, tuple(sorted(self.params.items())), self.threshold_mode,
                     self.score, self.convention, self.seed))

    def validated(self) -> Setting:
        """This setting checked through the registry: every parameter in range and of the
        right kind (missing ones take their defaults), a threshold mode the method
        supports, a known score and convention, a valid seed. A method that is a score
        (e.g. "gen", "knn") is its own score: ``score`` becomes the method's name. With a
        score on features (``ash-s`` then ``knn``) ``params`` holds both the method's and
        the score's parameters (see ``registry.split_params``)."""
        spec = get_method(self.method)
        check_threshold_mode(spec, self.threshold_mode)
        score = check_score_name(spec.scored_with(self.score)) \
            if spec.scorer is None else spec.scored_with(self.score)
        # a method that scores itself ignores ``score`` here (internal callers hand every
        # method one score); front ends refuse a user's conflicting choice (resolve_score)
        check_convention(self.convention)
        own, theirs = split_params(self.method, score, self.params)
        return replace(self, params={**own, **theirs}, score=score,
                       seed=check_seed(self.seed))

    @property
    def p(self) -> float | None:
        """The parameter ``p`` (None for methods without one)."""
        return self.params.get("p")

    def with_params(self, **values: float) -> Setting:
        """The same setting with some parameters changed (e.g. ``with_params(p=80)``)."""
        return replace(self, params={**self.params, **values})

    def shaper(self) -> Shaper:
        """A validated, unfitted shaper for this setting's method and parameters."""
        own = [q.name for q in get_method(self.method).params]
        return create_method(self.method, threshold_mode=self.threshold_mode, seed=self.seed,
                             params={k: v for k, v in self.params.items() if k in own})

    def label(self, detail: bool = False) -> str:
        """``ash-s p=90 local`` (the threshold mode only where the method has a choice);
        with ``detail`` every field is spelled out for captions: ``ash-s p=90,
        threshold=local, score=energy, FPR convention=id (ID positive)``."""
        if not detail:
            return setting_label(self.method, self.params, self.threshold_mode)
        head = setting_label(self.method, self.params, mode=False)
        side = "ID" if self.convention == "id" else "OOD"
        return (f"{head}, threshold={self.threshold_mode}, score={self.score}, "
                f"FPR convention={self.convention} ({side} positive)")

    def to_dict(self) -> dict[str, Any]:
        """JSON form: method, params, threshold, score, fpr_convention, seed."""
        return {"method": self.method, "params": dict(self.params),
                "threshold": self.threshold_mode, "score": self.score,
                "fpr_convention": self.convention, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Setting:
        """Inverse of ``to_dict`` (unvalidated; call ``validated()``)."""
        return cls(d["method"], d.get("params") or {}, d.get("threshold", "local"),
                   d.get("score", "energy"), d.get("fpr_convention", "id"), d.get("seed", 0))
