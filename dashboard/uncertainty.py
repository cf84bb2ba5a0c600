"""Intervals, counts, ASH-RAND's spread over seeds and operating points for the views:
``ash_core`` calls cached by small keys (bundle, OOD selection, the setting's JSON, the
engine), never by the score arrays. Results are shared between sessions: read only."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from ash_core import Bundle, EvalResult
from ash_core.maths.bootstrap import BootstrapCI, PairedCI, paired_bootstrap
from ash_core.maths.operating import OperatingPoint, operating_point, threshold_at_id_kept
from ash_core.reports.intervals import SPREAD_SEEDS, rand_spread, result_ci
from ash_core.setting import Setting
from dashboard import cache
from dashboard.background import Latest

#: resamples per setting: fewer than the CLI's default 1000, so that a slider move in the
#: Overview stays quick; the page names the number and the CLI call that gives the same
RESAMPLES = 200
SEED = 0


def result_key(bundle: Bundle, result: EvalResult) -> tuple:
    """What identifies a result's scores: bundle, OOD sets, the whole setting, engine."""
    return (*cache.bundle_key(bundle), tuple(result.ood_scores),
            cache.setting_key(result.setting), result.engine)


#: results with at most this many score x resample cells get their intervals at once (a
#: few tens of ms); larger ones in the background, so that the numbers do not wait
INLINE_CELLS = 1_000_000


@st.cache_resource(show_spinner=False)
def _intervals() -> Latest:
    return Latest(64)


def _make(result: EvalResult, resamples: int, seed: int):
    return lambda: result_ci(result, resamples, seed)


def _key(bundle: Bundle, result: EvalResult, resamples: int, seed: int) -> tuple:
    return (result_key(bundle, result), resamples, seed)


def ci(bundle: Bundle, result: EvalResult, resamples: int = RESAMPLES,
       seed: int = SEED) -> BootstrapCI:
    """The result's 95% bootstrap intervals and sample counts (once per setting)."""
    key = _key(bundle, result, resamples, seed)
    return _intervals().value(key, _make(result, resamples, seed))


def ci_soon(bundle: Bundle, result: EvalResult, resamples: int = RESAMPLES,
            seed: int = SEED) -> BootstrapCI | BaseException | None:
    """``ci``, or None while it is made in the background (asked again, it asks again
    where a newer request replaced this one); the exception where making it failed. Small
    results get theirs at once."""
    key = _key(bundle, result, resamples, seed)
    jobs = _intervals()
    found = jobs.get(key)
    if found is not None:
        return found
    cells = resamples * (len(result.id_scores) + sum(len(s) for s in
                                                     result.ood_scores.values()))
    if cells <= INLINE_CELLS:
        try:
            return jobs.value(key, _make(result, resamples, seed))
        except Exception as exc:  # noqa: BLE001 - shown beside the numbers
            return exc
    jobs.request(key, _make(result, resamples, seed))
    return None


@st.cache_data(max_entries=16, show_spinner="Bootstrapping A - B...")
def _paired(key_a: tuple, key_b: tuple, resamples: int, seed: int, _a: EvalResult,
            _b: EvalResult) -> PairedCI:
    return paired_bootstrap(_a.id_scores, _a.ood_scores, _b.id_scores, _b.ood_scores,
                            resamples, seed, convention=_a.convention)


def paired(bundle: Bundle, a: EvalResult, b: EvalResult, resamples: int = RESAMPLES,
           seed: int = SEED) -> PairedCI:
    """A - B with paired bootstrap intervals: two results on the same images."""
    return _paired(result_key(bundle, a), result_key(bundle, b), resamples, seed, a, b)


@st.cache_data(max_entries=8, show_spinner=f"Evaluating {len(SPREAD_SEEDS)} seeds...")
def _spread(path: str, content_hash: str, ood: tuple[str, ...], key: str,
            _setting: Setting) -> dict:
    bundle = cache.load(path)
    return rand_spread(lambda s: cache.exact(bundle, list(ood), s.validated()), _setting)


def seed_spread(bundle: Bundle, ood: Sequence[str], setting: Setting) -> dict:
    """The metrics' spread over ``SPREAD_SEEDS`` of a seeded method at this setting."""
    return _spread(*cache.bundle_key(bundle), tuple(ood), cache.setting_key(setting), setting)


def threshold_for(result: EvalResult, mode: str, value: float) -> float:
    """The score threshold of an operating point: ``kept`` keeps ``value`` % of the ID
    images (FPR95's threshold at 95), ``score`` is the threshold itself."""
    return threshold_at_id_kept(result.id_scores, value / 100) if mode == "kept" else value


def operating(bundle: Bundle, result: EvalResult, threshold: float) -> OperatingPoint:
    """What ``threshold`` keeps and flags of the ID split and each OOD set."""
    return operating_point(result.id_scores, result.ood_scores, threshold,
                           result.convention, bundle.id_split.name)
