"""Data behind the plots: histograms, ROC/PR curves, sweeps over p, Pareto fronts.

Each function takes results the page already has (``EvalResult``s, shared and read
only) and caches what it derives from them by small keys: the setting that produced
the result, never the arrays themselves (Streamlit does not hash ``_``-prefixed
arguments).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from ash_core import Bundle, EvalResult
from ash_core.maths import curves as ac
from ash_core.maths.pareto import pareto_mask
from ash_core.sweep import sweep
from dashboard import cache


def result_key(bundle: Bundle, result: EvalResult) -> tuple:
    """What identifies a result: bundle, OOD selection, setting and the engine used."""
    return (*cache.bundle_key(bundle), tuple(result.ood_scores), result.method, result.p,
            result.threshold_mode, result.score, result.convention, result.engine)


@st.cache_data(max_entries=32, show_spinner=False)
def _histograms(key: tuple, base_key: tuple, id_name: str, bins: int, _shaped: EvalResult,
                _base: EvalResult) -> tuple[ac.Histogram, ac.Histogram, float, float]:
    hb = ac.density_histograms({id_name: _base.id_scores, **_base.ood_scores}, bins)
    ha = ac.density_histograms({id_name: _shaped.id_scores, **_shaped.ood_scores}, bins)
    return hb, ha, ac.tpr_threshold(_base.id_scores), ac.tpr_threshold(_shaped.id_scores)


def histograms(bundle: Bundle, shaped: EvalResult, base: EvalResult, bins: int = 80) -> tuple[ac.Histogram, ac.Histogram, float, float]:
    """Density histograms of ID and every OOD set on shared edges, no shaping and shaped,
    and the two TPR-95 thresholds: (hist_before, hist_after, thr_before, thr_after)."""
    return _histograms(result_key(bundle, shaped), result_key(bundle, base),
                       bundle.id_split.name, bins, shaped, base)


@st.cache_data(max_entries=64, show_spinner=False)
def _curves(key: tuple, max_points: int, _result: EvalResult) -> dict[str, tuple]:
    r = _result
    return {n: ac.roc_pr_curves(r.id_scores, s, r.convention, max_points)
            for n, s in r.ood_scores.items()}


def curves(bundle: Bundle, shaped: EvalResult, base: EvalResult, kind: str = "roc", max_points: int = ac.MAX_CURVE_POINTS
           ) -> dict[str, tuple[ac.Curve, ac.Curve]]:
    """Per OOD set: (unshaped curve, shaped curve), thinned; positive class = convention.

    Cached per result, so the unshaped curves are computed once, not on every p move."""
    after = _curves(result_key(bundle, shaped), max_points, shaped)
    before = _curves(result_key(bundle, base), max_points, base)
    i = 0 if kind == "roc" else 1
    return {n: (before[n][i], after[n][i]) for n in shaped.ood_scores}


def grid_for(step: int) -> tuple[float, ...]:
    return tuple(float(p) for p in range(0, 100, int(step)))


@st.cache_resource(show_spinner=False)
def _sweep_cache() -> cache.LRU:
    return cache.LRU(16)


def sweep_frame(bundle: Bundle, ood: Sequence[str], grid: Sequence[float], threshold: str,
                score: str, convention: str, methods: Sequence[str],
                progress: cache.Progress | None = None) -> pd.DataFrame:
    """``ash_core.sweep.sweep`` over ``methods``, cached by small keys.

    Computed outside Streamlit's function caches so that ``progress`` (which draws a
    progress bar) can run; the result is shared between sessions: treat it as read-only.
    """
    key = (*cache.bundle_key(bundle), tuple(ood), tuple(methods), tuple(grid), threshold,
           score, convention)
    df = _sweep_cache().get(key)
    if df is None:
        ev = cache.get_evaluator(bundle, ood)
        df = sweep(ev.bundle, list(methods), list(grid), threshold, score, convention,
                   list(ood), evaluator=ev, progress=progress)
        _sweep_cache().put(key, df)
    return df


def pareto(df: pd.DataFrame, y: str) -> pd.DataFrame:
    """The rows of ``df`` on the Pareto front of (ID accuracy, ``y``), by ID accuracy:
    ``ash_core.maths.pareto.pareto_mask``, the Leaderboard's one definition of the front (exact
    duplicates both stay on it; rows with NaN never)."""
    on_front = pareto_mask(df["id_acc"], df[y], True, not y.endswith("fpr95"))
    return df[on_front].sort_values("id_acc", kind="stable")
