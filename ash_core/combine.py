"""Plug-and-play settings: which scores a method combines with, and one parameter list
split between a shaping method and a score on features (``ash-s`` then ``knn``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .detectors import get_feature_score, list_feature_scores
from .errors import ParameterError
from .registry import get_method
from .scores import list_scores


def compatible_scores(method: str) -> list[str]:
    """The scores ``method`` can be evaluated with (``MethodSpec.scores``), for a UI."""
    return get_method(method).scores


def check_score_name(score: str) -> str:
    """``score`` if it is a score on logits or on features, else ParameterError."""
    known = [*list_scores(), *list_feature_scores()]
    if score not in known:
        raise ParameterError(f"unknown score {score!r}; choose one of: {', '.join(known)}.")
    return score


def split_params(method: str, score: str, values: Mapping[str, Any] | None
                 ) -> tuple[dict[str, float], dict[str, float]]:
    """One parameter mapping split into (the method's, the score's), each validated with
    defaults filled. A plug-and-play setting (``ash-s`` then ``knn``) holds both in one
    mapping (``{"p": 90, "k": 50}``); for a method that is itself a score both are its own.
    A name neither declares is a ParameterError listing the valid ones."""
    spec = get_method(method)
    values = dict(values or {})
    feature = get_feature_score(score) if spec.feature_score is None else None
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
