"""A setting's numbers at the penultimate layer: exact, or from the score cube.

The policy is ash_core's (``ash_core.policy.choose_engine``: exact where one exact
evaluation is cheap, the score cube where not), asked once per setting; the cube's
numbers are ``ash_core.cube.lookup.point_result`` (``result.engine`` says which served). This module adds what a page needs on top: one in-memory cube per bundle,
method and threshold mode, shared by every session and built in a background thread
(``dashboard.builds``); cached results; and visible stand-ins:

* while a large bundle's cube is being prepared, the exact numbers at the current p are
  shown, labelled exact, and ``Replay.preparing`` is the build (its progress; the page
  polls it and switches to the cube when it is ready);
* when the cube fails or cannot serve an explicit ``?engine=cube``, the exact numbers are
  shown, labelled exact, with the reason in ``Replay.note``.

Reached through ``dashboard.replay``, which routes a setting here or to an inner layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from ash_core import Bundle, EvalResult
from ash_core.cube import get_cube
from ash_core.cube.lookup import point_result
from ash_core.cube.model import fits_on_id_fit
from ash_core.errors import ParameterError
from ash_core.policy import EXACT_MAX_WORK, SLIDER_GRID, choose_engine, exact_work
from ash_core.setting import Setting
from dashboard import cache
from dashboard.builds import Build, Builds
from dashboard.result import Replay

#: In-memory cubes kept (shared by every session).
CUBES_KEPT = 4
#: Bundles whose exact pass costs more multiply-adds build their cubes in the background:
#: the page shows exact numbers, labelled exact, with the build's progress until the cube
#: is ready. Smaller bundles wait for their cube (a fraction of a second).
BACKGROUND_MIN_WORK = EXACT_MAX_WORK
#: How often a waiting page redraws the build's progress.
POLL_S = 0.1


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


def cube_for(bundle: Bundle, method: str, threshold: str, progress: cache.Progress | None = None):
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
def _cube_result(path: str, chash: str, ood: tuple[str, ...], key: str, _setting: Setting,
                 _bundle: Bundle) -> EvalResult:
    s = _setting
    return point_result(cube_for(_bundle, s.method, s.threshold_mode), s.p, s.score, s.convention,
                        ood, _bundle.groups)


def cube_result(bundle: Bundle, ood: Sequence[str], setting: Setting) -> EvalResult:
    """The numbers of a setting the policy gave to the cube, looked up in its cube (cached
    by small keys; read only)."""
    return _cube_result(*cache.bundle_key(bundle), tuple(ood), cache.setting_key(setting),
                        setting, bundle)


def _while_preparing(bundle: Bundle, ood: Sequence[str], setting: Setting) -> Replay:
    """A large bundle's result: from the cube when it is ready; else the exact result at
    p, computed before the cube's build starts (the first numbers get the cores first),
    with the build in ``preparing``. Raises the error of a failed build."""
    method, threshold = setting.method, setting.threshold_mode
    key = _key(bundle, method, threshold)
    job = _builds().running(key)
    if _builds().ready.get(key) is None and (job is None or not job.done):
        cache.prefetch_unshaped(bundle, setting.score)
        result = cache.exact(bundle, ood, setting)
        job = cube_build(bundle, method, threshold)
        if job is not None and not job.done:
            return Replay(result, preparing=job)
    cube_for(bundle, method, threshold)  # ready: returns at once, or raises the failure
    return Replay(cube_result(bundle, ood, setting))


def replay(bundle: Bundle, ood: Sequence[str], setting: Setting, engine: str = "auto",
           progress: cache.Progress | None = None) -> Replay:
    """A validated setting's result from the engine the policy picks (``engine``: the
    page's ``auto``/``exact``/``cube``); cached, read only."""
    try:
        used = choose_engine(cache.get_evaluator(bundle, ood), setting.method,
                             setting.threshold_mode, engine, p=setting.p,
                             score=setting.score).engine
        note = ""
    except ParameterError as exc:  # ?engine=cube where the cube cannot serve: say so
        used, note = "exact", f"{exc} Exact numbers shown."
    if used == "cube":
        try:
            if _background(bundle, ood):
                return _while_preparing(bundle, ood, setting)
            cube_for(bundle, setting.method, setting.threshold_mode, progress)
            return Replay(cube_result(bundle, ood, setting))
        except Exception as exc:  # noqa: BLE001 - shown in the page, never hidden
            note = (f"the score cube failed ({cache.error_text(exc)}); exact numbers shown "
                    "instead")
    return Replay(cache.exact(bundle, ood, setting, progress), note)
