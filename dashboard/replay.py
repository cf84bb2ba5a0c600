"""Which engine serves a setting, and the result it gives, labelled truthfully.

The policy is ash_core's (``ash_core.cube.choose_engine`` / ``evaluate_setting``: exact
where one exact evaluation is cheap, the score cube where not; ``result.engine`` says
which served). This module adds what a page needs on top: one in-memory cube per bundle,
method and threshold mode, shared by every session and built in a background thread
(``dashboard.builds``); cached results; and visible stand-ins:

* while a large bundle's cube is being prepared, the exact numbers at the current p are
  shown, labelled exact, and ``Replay.preparing`` is the build (its progress; the page
  polls it and switches to the cube when it is ready);
* when the cube fails or cannot serve an explicit ``?engine=cube``, the exact numbers are
  shown, labelled exact, with the reason in ``Replay.note``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import streamlit as st

from ash_core import Bundle, EvalResult
from ash_core.cube import get_cube
from ash_core.cube.model import fits_on_id_fit
from ash_core.errors import ParameterError
from ash_core.layers import PENULTIMATE
from ash_core.maths.stats import max_abs_difference
from ash_core.policy import (
    EXACT_MAX_WORK,
    SLIDER_GRID,
    choose_engine,
    evaluate_setting,
    exact_work,
)
from dashboard import cache
from dashboard.builds import Build, Builds

Progress = Callable[[int, int], None]

#: In-memory cubes kept (shared by every session).
CUBES_KEPT = 4
#: Bundles whose exact pass costs more multiply-adds build their cubes in the background:
#: the page shows exact numbers, labelled exact, with the build's progress until the cube
#: is ready. Smaller bundles wait for their cube (a fraction of a second).
BACKGROUND_MIN_WORK = EXACT_MAX_WORK
#: How often a waiting page redraws the build's progress.
POLL_S = 0.1
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
    #: the cube's background build while exact numbers stand in for it
    preparing: Build | None = None

    @property
    def engine(self) -> str:
        return self.result.engine

    @property
    def label(self) -> str:
        return LABELS[self.engine]


@st.cache_resource(show_spinner=False)
def _builds() -> Builds:
    return Builds(CUBES_KEPT)


def _key(bundle: Bundle, method: str, threshold: str) -> tuple:
    return (*cache.bundle_key(bundle), method, threshold)


def _background(bundle: Bundle, ood: Sequence[str]) -> bool:
    """Whether a page should not wait for this bundle's cubes: one exact evaluation is
    expensive (the same rule that makes ``auto`` choose the cube)."""
    return exact_work(cache.get_evaluator(bundle, ood)) > BACKGROUND_MIN_WORK


def cube_build(bundle: Bundle, method: str, threshold: str) -> Build | None:
    """The background build of one cube (None when the cube is ready): started on first
    call, one per (bundle, method, threshold mode), shared by every session."""
    fit = [bundle.id_fit.name] if bundle.id_fit and fits_on_id_fit(method, threshold) else []
    evaluator = cache.warm_features(bundle, fit)
    return _builds().start(_key(bundle, method, threshold),
                           lambda progress: get_cube(evaluator, method, SLIDER_GRID,
                                                     threshold, progress=progress))


def cube_for(bundle: Bundle, method: str, threshold: str, progress: Progress | None = None):
    """The score cube of one method and threshold mode over the slider's grid (shared,
    read-only), waiting for its build with ``progress(done, total)``; raises the error
    of a failed build."""
    job = cube_build(bundle, method, threshold)
    if job is None:
        cube = _builds().ready.get(_key(bundle, method, threshold))
        return cube if cube is not None else cube_for(bundle, method, threshold, progress)
    while True:
        finished = job.wait(POLL_S)
        if progress is not None and job.rows_total:
            progress(job.rows_done, job.rows_total)
        if finished:
            break
    if job.error is not None:
        raise _builds().take_failure(job)
    return job.value


@st.cache_resource(max_entries=64, show_spinner=False)
def _cube_result(path: str, chash: str, ood: tuple[str, ...], method: str, p: float,
                 threshold: str, score: str, convention: str, _bundle: Bundle) -> EvalResult:
    return evaluate_setting(cache.get_evaluator(_bundle, ood),
                            cache.setting_of(method, p, threshold, score, convention),
                            engine="cube", cube_provider=lambda m, t, seed: cube_for(_bundle, m, t))


def _while_preparing(bundle: Bundle, ood: Sequence[str], method: str, p: float,
                     threshold: str, score: str, convention: str) -> Replay:
    """A large bundle's result: from the cube when it is ready; else the exact result at
    p, computed before the cube's build starts (the first numbers get the cores first),
    with the build in ``preparing``. Raises the error of a failed build."""
    key = _key(bundle, method, threshold)
    job = _builds().running(key)
    if _builds().ready.get(key) is None and (job is None or not job.done):
        cache.prefetch_unshaped(bundle, score)
        result = cache.exact(bundle, ood, method, p, threshold, score, convention)
        job = cube_build(bundle, method, threshold)
        if job is not None and not job.done:
            return Replay(result, preparing=job)
    cube_for(bundle, method, threshold)  # ready: returns at once, or raises the failure
    return Replay(_cube_result(*cache.bundle_key(bundle), tuple(ood), method, float(p),
                               threshold, score, convention, bundle))


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
            if _background(bundle, ood):
                return _while_preparing(bundle, ood, method, p, threshold, score, convention)
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
    truth = cache.exact(bundle, ood, r.method, r.p, r.threshold_mode, r.score, r.convention)
    return max_abs_difference(r.to_dict(), truth.to_dict())
