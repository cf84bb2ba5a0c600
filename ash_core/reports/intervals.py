"""Intervals and counts beside the metrics: a result's bootstrap intervals, its JSON with
them, table columns, and ASH-RAND's spread over seeds.

Shared by ``ash-explore evaluate --ci`` and the dashboard, so that both show the same
intervals for the same setting, resamples and seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
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


def _named_ci(ci: BootstrapCI, groups: Mapping[str, Iterable[str]], name: str
              ) -> tuple[int, dict[str, Interval]]:
    """(OOD rows, intervals) of one OOD set, of the average ("average" or "Average") or of
    a group's average ("average (g)")."""
    if name in ("average", "Average"):
        return sum(ci.n_ood.values()), ci.average
    if name[:len("average (")] in ("average (", "Average (") and name.endswith(")"):
        g = name[len("average ("):-1]
        return sum(ci.n_ood.get(n, 0) for n in groups.get(g, ())), ci.groups[g]
    return ci.n_ood[name], ci.ood[name]


def ci_frame(frame: pd.DataFrame, ci: BootstrapCI,
             groups: Mapping[str, Iterable[str]] | None = None) -> pd.DataFrame:
    """``evaluation_frame``'s rows with ``n_id``, ``n_ood`` and each metric's interval as
    ``{metric}_lo`` / ``{metric}_hi`` columns (fractions)."""
    out = frame.copy()
    rows = [_named_ci(ci, groups or {}, str(r)) for r in out["ood_set"]]
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


def ci_caption(resamples: int, seed: int) -> str:
    """What the bracketed intervals of a text table are, for its caption."""
    return (f"[95% bootstrap interval] over {resamples} resamples (seed {seed}), ID and "
            "each OOD set resampled separately")


def sweep_ci_frame(frame: pd.DataFrame, cis: Sequence[BootstrapCI],
                   groups: Mapping[str, Iterable[str]] | None = None) -> pd.DataFrame:
    """A sweep table (one row per setting, ``{name}/{metric}`` columns for OOD sets,
    ``average`` and ``average (g)``) with, per row's ``cis``, each metric column followed
    by ``{name}/{metric}_lo`` and ``_hi`` (fractions), each name's metrics by
    ``{name}/n_ood``, and ``n_id`` last."""
    if len(cis) != len(frame):
        raise ValueError(f"{len(cis)} intervals for {len(frame)} sweep rows")
    cols: dict[str, list] = {}
    for col in frame.columns:
        cols[col] = list(frame[col])
        name, _, metric = str(col).rpartition("/")
        if metric not in METRIC_NAMES:
            continue
        rows = [_named_ci(ci, groups or {}, name) for ci in cis]
        cols[f"{name}/{metric}_lo"] = [iv[metric][0] for _, iv in rows]
        cols[f"{name}/{metric}_hi"] = [iv[metric][1] for _, iv in rows]
        cols.pop(f"{name}/n_ood", None)  # after the name's last metric
        cols[f"{name}/n_ood"] = [n for n, _ in rows]
    cols["n_id"] = [ci.n_id for ci in cis]
    out = pd.DataFrame(cols, index=frame.index)
    out.attrs = dict(frame.attrs)
    return out


def bracketed_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``sweep_ci_frame``'s output for text tables: each ``X_lo``/``X_hi`` pair becomes one
    ``X_ci`` column of intervals in brackets, in place."""
    cols: dict[str, list] = {}
    for col in frame.columns:
        col = str(col)
        if col.endswith("_hi") and f"{col[:-3]}_lo" in frame.columns:
            continue
        if col.endswith("_lo") and f"{col[:-3]}_hi" in frame.columns:
            cols[f"{col[:-3]}_ci"] = [bracket(lo, hi) for lo, hi in zip(
                frame[col], frame[f"{col[:-3]}_hi"], strict=True)]
        else:
            cols[col] = list(frame[col])
    return pd.DataFrame(cols, index=frame.index)


def rand_spread(evaluate: Callable[[Setting], EvalResult], setting: Setting,
                seeds: Iterable[int] = SPREAD_SEEDS) -> dict[str, Any]:
    """The spread over ``seeds`` of a seeded method's metrics (ASH-RAND): each seed's
    result by ``evaluate``, then ``seed_spread`` of the averages and of each OOD set."""
    results = [evaluate(replace(setting, seed=int(s))) for s in seeds]
    names = list(results[0].ood)
    return {"seeds": [int(s) for s in seeds],
            "average": seed_spread([r.average for r in results]),
            "ood": {n: seed_spread([r.ood[n] for r in results]) for n in names}}
