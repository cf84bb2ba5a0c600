"""Which engine serves a setting, and the result it gives, labelled truthfully.

The policy is ash_core's (``ash_core.cube.choose_engine`` / ``evaluate_setting``: exact
where one exact evaluation is cheap, the score cube where not; ``result.engine`` says
which served). This module adds what a page needs on top: one in-memory cube per bundle,
method and threshold mode, shared by every session and built with a progress callback;
cached results; and a visible fallback: when the cube fails or cannot serve an explicit
``?engine=cube``, the exact numbers are shown, labelled exact, with the reason in
``Replay.note``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import streamlit as st

from ash_core import Bundle, EvalResult
from ash_core.cube import DEFAULT_GRID, choose_engine, evaluate_setting, get_cube
from ash_core.errors import ParameterError
from ash_core.layers import PENULTIMATE
from ash_core.stats import max_abs_difference
from dashboard import cache

Progress = Callable[[int, int], None]

OVERRIDES = ("auto", "exact", "cube")
LABELS = {
    "exact": "exact, as `ash-explore evaluate`",
    "cube": "score cube (float32; equal to `ash-explore evaluate` up to rounding)",
}


@dataclass(frozen=True)
class Replay:
    """A setting's result (``result.engine``: what computed it) and, when the asked or
    automatic engine was not used, why."""

    result: EvalResult
    note: str = ""

    @property
    def engine(self) -> str:
        return self.result.engine

    @property
    def label(self) -> str:
        return LABELS[self.engine]


@st.cache_resource(show_spinner=False)
def _cubes() -> cache.LRU:
    return cache.LRU(4)


def cube_for(bundle: Bundle, method: str, threshold: str, progress: Progress | None = None):
    """The score cube of one method and threshold mode over the slider's grid (built once
    per bundle, with ``progress(done, total)`` while it is built; shared and read-only)."""
    key = (*cache.bundle_key(bundle), method, threshold)
    cube = _cubes().get(key)
    if cube is None:
        cube = get_cube(cache.base_evaluator(bundle), method, DEFAULT_GRID, threshold,
                        progress=progress)
        _cubes().put(key, cube)
    return cube


@st.cache_resource(max_entries=64, show_spinner=False)
def _cube_result(path: str, chash: str, ood: tuple[str, ...], method: str, p: float,
                 threshold: str, score: str, convention: str, _bundle: Bundle) -> EvalResult:
    return evaluate_setting(cache.get_evaluator(_bundle, ood), method, p, threshold=threshold,
                            score=score, convention=convention, engine="cube",
                            cube_provider=lambda m, t, seed: cube_for(_bundle, m, t))


def replay(bundle: Bundle, ood: Sequence[str], method: str, p: float | None, threshold: str,
           score: str, convention: str, override: str = "auto",
           progress: Progress | None = None, layer: str | None = None) -> Replay:
    """One setting's result from the engine the policy picks (cached; read only)."""
    if layer not in (None, PENULTIMATE):  # shaping at an inner layer: dashboard/layer_replay
        from dashboard import layer_replay  # it builds on this module's Replay

        return layer_replay.replay(bundle, layer, ood, method, p, threshold, score, convention,
                                   progress)
    p, threshold = cache.normalized(method, p, threshold)
    try:
        engine = choose_engine(cache.get_evaluator(bundle, ood), method, threshold, override,
                               p=p).engine
        note = ""
    except ParameterError as exc:  # ?engine=cube where the cube cannot serve: say so
        engine, note = "exact", f"{exc} Exact numbers shown."
    if engine == "cube":
        try:
            cube_for(bundle, method, threshold, progress)
            return Replay(_cube_result(*cache.bundle_key(bundle), tuple(ood), method,
                                       float(p), threshold, score, convention, bundle))
        except Exception as exc:  # noqa: BLE001 - shown in the page, never hidden
            note = (f"the score cube failed ({cache.error_text(exc)}); exact numbers shown "
                    "instead")
    return Replay(cache.exact(bundle, ood, method, p, threshold, score, convention), note)


def verify(bundle: Bundle, ood: Sequence[str], shown: Replay) -> tuple[float, int]:
    """(max |shown - exact|, numbers compared) over the metrics and accuracies shown."""
    r = shown.result
    truth = cache.exact(bundle, ood, r.method, r.p, r.threshold, r.score, r.convention)
    return max_abs_difference(r.to_dict(), truth.to_dict())
