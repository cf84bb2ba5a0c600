"""Where a setting gains and where it loses against no shaping: per OOD set and per group.

An average can hide a regression (a method that lifts a far-OOD set by 30 points and
drops the near-OOD set by 30 reads as "barely changes"), so a report's summary names the
sets and groups that move, each with its before and after. Pure: results in, a frame and
sentences out.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from ash_core.engine.result import EvalResult

#: a change smaller than this (a fraction: 0.5 pp) is "unchanged"
TOLERANCE = 0.005
#: how a metric's change is read: +1 when higher is better
DIRECTION = {"auroc": 1, "aupr_in": 1, "aupr_out": 1, "fpr95": -1}
COLUMNS = ["kind", "name", "sets", "before", "after", "delta", "verdict"]


def _verdict(delta: float, metric: str, tol: float) -> str:
    signed = DIRECTION[metric] * delta
    return "gain" if signed > tol else "loss" if signed < -tol else "unchanged"


def gains_frame(result: EvalResult, base: EvalResult, metric: str = "auroc",
                tol: float = TOLERANCE) -> pd.DataFrame:
    """One row per OOD set, then one per group of ``result.groups``, then the average:
    kind ("set", "group", "average"), name, sets (the group's members), before (no
    shaping), after, delta (after minus before, fractions) and verdict (gain, loss or
    unchanged, with ``DIRECTION`` saying which way is better)."""
    if metric not in DIRECTION:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(DIRECTION)}")
    rows = []

    def add(kind: str, name: str, sets: tuple[str, ...], before: float, after: float):
        delta = after - before
        rows.append((kind, name, ", ".join(sets), before, after, delta,
                     _verdict(delta, metric, tol)))

    for name, m in result.ood.items():
        if name in base.ood:
            add("set", name, (name,), float(base.ood[name][metric]), float(m[metric]))
    base_groups = base.group_averages
    for group, avg in result.group_averages.items():
        if group in base_groups:
            members = tuple(n for n in result.groups[group] if n in result.ood)
            add("group", group, members, float(base_groups[group][metric]),
                float(avg[metric]))
    add("average", "average", tuple(result.ood), float(base.average[metric]),
        float(result.average[metric]))
    return pd.DataFrame(rows, columns=COLUMNS)


def _move(row, named: bool = True) -> str:
    return ((f"{row.name} " if named else "") + f"{100 * row.before:.1f}% to "
            f"{100 * row.after:.1f}% ({100 * row.delta:+.1f} pp)")


def gain_sentences(result: EvalResult, base: EvalResult, setting: str,
                   metric: str = "auroc", tol: float = TOLERANCE) -> list[str]:
    """Plain sentences: the OOD sets where ``setting`` gains and where it loses (largest
    change first), then each group's before and after; a loss is never left out."""
    df = gains_frame(result, base, metric, tol)
    label = {"auroc": "AUROC", "fpr95": "FPR95", "aupr_in": "AUPR-In",
             "aupr_out": "AUPR-Out"}[metric]
    sets = df[df["kind"] == "set"]
    order = sets.assign(size=(sets["delta"] * DIRECTION[metric]).abs())
    out = []
    for verdict, verb in (("gain", "gains"), ("loss", "loses")):
        part = order[order["verdict"] == verdict].sort_values("size", ascending=False)
        if part.empty:
            out.append(f"{setting} {verb} {label} on none of the {len(sets)} OOD sets.")
            continue
        moves = "; ".join(_move(r) for r in part.itertuples(index=False))
        out.append(f"{setting} {verb} {label} on {len(part)} of {len(sets)} OOD set(s): "
                   f"{moves}.")
    groups = df[df["kind"] == "group"]
    if not groups.empty:
        words = {"gain": "gains", "loss": "loses", "unchanged": "is unchanged"}
        parts = [f"{r.name}-OOD ({r.sets}) {words[r.verdict]}: {_move(r, named=False)}"
                 for r in groups.itertuples(index=False)]
        out.append(f"By group ({label}): " + "; ".join(parts) + ".")
    return out


def groups_text(groups: Mapping[str, tuple[str, ...]]) -> str:
    """"near: a, b; far: c" (empty when the bundle declares no groups)."""
    return "; ".join(f"{g}: {', '.join(m)}" for g, m in groups.items())
