"""Intervals and counts beside the metrics: a result's bootstrap intervals, its JSON with
them, table columns, and ASH-RAND's spread over seeds.

Shared by ``ash-explore evaluate --ci`` and the dashboard, so that both show the same
intervals for the same setting, resamples and seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import pandas as pd

from ash_core.engine.result import EvalResult
from ash_core.maths.bootstrap import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    BootstrapCI,
    Interval,
    bootstrap_ci,
    seed_spread,
)
from ash_core.maths.metrics import METRIC_NAMES
from ash_core.setting import Setting

#: the seeds ASH-RAND's spread is taken over
SPREAD_SEEDS = tuple(range(10))


def result_ci(result: EvalResult, resamples: int = DEFAULT_RESAMPLES,
              seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL) -> BootstrapCI:
    """The bootstrap intervals of a result's metrics: per OOD set, the average and each of
    the bundle's groups, in the result's convention."""
    return bootstrap_ci(result.id_scores, result.ood_scores, resamples, seed, level,
                        result.convention, groups=result.groups)


def _pair(iv: Interval) -> list[float]:
    return [float(iv[0]), float(iv[1])]


def _with(metrics: Mapping[str, Any], n_ood: int, ci: Mapping[str, Interval]) -> dict:
    return {**metrics, "n_ood": n_ood, "ci": {m: _pair(ci[m]) for m in METRIC_NAMES}}


def with_ci(result_dict: Mapping[str, Any], ci: BootstrapCI,
            groups: Mapping[str, Iterable[str]] | None = None) -> dict[str, Any]:
    """``EvalResult.to_dict()`` with the counts and intervals beside the metrics: each OOD
    set, the average and each group get ``n_ood`` and ``ci: {metric: [lo, hi]}``; the top
    level ``n_id`` and ``ci_method`` (how the intervals were made). ``groups``: each
    group's OOD sets, for its count."""
    out = dict(result_dict)
    out["n_id"] = ci.n_id
    out["ood"] = {n: _with(m, ci.n_ood[n], ci.ood[n]) for n, m in result_dict["ood"].items()}
    out["average"] = _with(result_dict["average"], sum(ci.n_ood.values()), ci.average)
    if "groups" in result_dict:
        members = {g: list(v) for g, v in (groups or {}).items()}
        out["groups"] = {g: _with(m, sum(ci.n_ood[n] for n in members.get(g, ())
                                         if n in ci.n_ood), ci.groups[g])
                         for g, m in result_dict["groups"].items()}
    out["ci_method"] = ci.about()
    return out


def _row_ci(ci: BootstrapCI, groups: Mapping[str, Iterable[str]], row: str
            ) -> tuple[int, dict[str, Interval]]:
    """(OOD rows, intervals) of one row of ``evaluation_frame``: a set, the Average or a
    group's "Average (g)"."""
    if row == "Average":
        return sum(ci.n_ood.values()), ci.average
    if row.startswith("Average (") and row.endswith(")"):
        g = row[len("Average ("):-1]
        return sum(ci.n_ood.get(n, 0) for n in groups.get(g, ())), ci.groups[g]
    return ci.n_ood[row], ci.ood[row]


def ci_frame(frame: pd.DataFrame, ci: BootstrapCI,
             groups: Mapping[str, Iterable[str]] | None = None) -> pd.DataFrame:
    """``evaluation_frame``'s rows with ``n_id``, ``n_ood`` and each metric's interval as
    ``{metric}_lo`` / ``{metric}_hi`` columns (fractions)."""
    out = frame.copy()
    rows = [_row_ci(ci, groups or {}, str(r)) for r in out["ood_set"]]
    out["n_id"] = ci.n_id
    out["n_ood"] = [n for n, _ in rows]
    for m in METRIC_NAMES:
        out[f"{m}_lo"] = [iv[m][0] for _, iv in rows]
        out[f"{m}_hi"] = [iv[m][1] for _, iv in rows]
    return out


def bracket(lo: float, hi: float) -> str:
    """An interval of fractions in %, as text: ``[96.80, 97.45]``."""
    return f"[{100 * lo:.2f}, {100 * hi:.2f}]"


def bracketed(frame: pd.DataFrame) -> pd.DataFrame:
    """``ci_frame``'s output for text tables: each metric followed by its interval in
    brackets (``{metric}_ci``), then the counts; the ``_lo``/``_hi`` columns go."""
    out = frame[["ood_set"]].copy()
    for m in METRIC_NAMES:
        out[m] = frame[m]
        out[f"{m}_ci"] = [bracket(lo, hi) for lo, hi in zip(frame[f"{m}_lo"],
                                                            frame[f"{m}_hi"], strict=True)]
    out["n_id"] = frame["n_id"]
    out["n_ood"] = frame["n_ood"]
    return out


def rand_spread(evaluate: Callable[[Setting], EvalResult], setting: Setting,
                seeds: Iterable[int] = SPREAD_SEEDS) -> dict[str, Any]:
    """The spread over ``seeds`` of a seeded method's metrics (ASH-RAND): each seed's
    result by ``evaluate``, then ``seed_spread`` of the averages and of each OOD set."""
    results = [evaluate(replace(setting, seed=int(s))) for s in seeds]
    names = list(results[0].ood)
    return {"seeds": [int(s) for s in seeds],
            "average": seed_spread([r.average for r in results]),
            "ood": {n: seed_spread([r.ood[n] for r in results]) for n in names}}
