"""Across bundles: every shaping method on every bundle, by near-OOD / far-OOD group.

What a stakeholder reads in one picture: a method x bundle table of near-OOD and far-OOD
AUROC (each the bundle's ``groups`` average; "all" is the average over every OOD set) and
ID accuracy, and for each shaping method its gain or loss against no shaping (same score)
per bundle and group. Pure: ``EvalResult``s in, frames out; evaluating them is the
caller's (``evaluate_across`` does it with the exact evaluator).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ash_core.engine.result import EvalResult
from ash_core.methods import get_method
from ash_core.setting import Setting

#: no shaping first (what every gain is measured against), then the shaping methods
BASELINE = "none"
SHAPING = ("ash-p", "ash-b", "ash-s", "ash-rand", "react", "scale", "dice")
ACROSS_METHODS = (BASELINE, *SHAPING)
#: the groups every bundle gets a column for ("all": every OOD set), in this order
GROUPS = ("near", "far", "all")
COLUMNS = ["bundle", "method", "params", "group", "sets", "auroc", "fpr95", "id_acc"]


def params_text(setting: Setting) -> str:
    return " ".join(f"{k}={v:g}" for k, v in setting.params.items()) or "-"


def across_frame(results: Mapping[str, Mapping[str, EvalResult]]) -> pd.DataFrame:
    """``results[bundle][method]`` -> one row per (bundle, method, group): the group's
    average AUROC and FPR95 (fractions), the ID accuracy with the method, the parameters
    and the group's sets. A bundle without a group has no row for it."""
    rows = []
    for bundle, by_method in results.items():
        for method, r in by_method.items():
            averages = {**r.group_averages, "all": r.average}
            members = {**{g: [n for n in m if n in r.ood] for g, m in r.groups.items()},
                       "all": list(r.ood)}
            for group in GROUPS:
                if group in averages:
                    rows.append((bundle, method, params_text(r.setting), group,
                                 ", ".join(members[group]), float(averages[group]["auroc"]),
                                 float(averages[group]["fpr95"]),
                                 r.id_accuracy.get("shaped")))
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["id_acc"] = out["id_acc"].astype(float)
    return out


def heat_table(frame: pd.DataFrame, group: str | None, value: str = "auroc",
               methods: Sequence[str] = ACROSS_METHODS) -> pd.DataFrame:
    """A method x bundle table of ``value`` for ``group`` (None: ID accuracy, the same
    for every group), rows in ``methods`` order, NaN where a bundle lacks the method or
    the group."""
    if group is None:
        d = frame.drop_duplicates(["bundle", "method"])
        value = "id_acc"
    else:
        d = frame[frame["group"] == group]
    bundles = list(dict.fromkeys(frame["bundle"]))
    table = d.pivot_table(index="method", columns="bundle", values=value, aggfunc="first",
                          dropna=False)
    return table.reindex(index=[m for m in methods if m in set(frame["method"])],
                         columns=bundles)


def gains_table(frame: pd.DataFrame, value: str = "auroc") -> pd.DataFrame:
    """Each shaping method's ``value`` minus no shaping's, per bundle and group: rows are
    the shaping methods, columns (bundle, group); NaN where either is missing."""
    d = frame.set_index(["bundle", "group", "method"])[value]
    cols = list(dict.fromkeys(zip(frame["bundle"], frame["group"], strict=True)))
    methods = [m for m in SHAPING if m in set(frame["method"])]
    data = np.full((len(methods), len(cols)), np.nan)
    for j, (bundle, group) in enumerate(cols):
        base = d.get((bundle, group, BASELINE))
        if base is None:
            continue
        for i, m in enumerate(methods):
            v = d.get((bundle, group, m))
            if v is not None:
                data[i, j] = float(v) - float(base)
    return pd.DataFrame(data, index=methods, columns=pd.MultiIndex.from_tuples(
        cols, names=["bundle", "group"]) if cols else None)


def evaluate_across(bundles: Iterable[tuple[str, Callable[[Setting], EvalResult]]],
                    methods: Sequence[str] = ACROSS_METHODS, score: str = "energy",
                    convention: str = "id"
                    ) -> tuple[dict[str, dict[str, EvalResult]], dict[str, str]]:
    """Every method at its declared defaults on every bundle: ``bundles`` yields (name,
    evaluate) pairs; returns the results and, per "bundle: method" left out, why (a
    method the bundle cannot serve, e.g. ReAct without id_fit)."""
    results: dict[str, dict[str, EvalResult]] = {}
    skipped: dict[str, str] = {}
    for name, evaluate in bundles:
        results[name] = {}
        for method in methods:
            setting = Setting(method, get_method(method).defaults, "local", score, convention)
            try:
                results[name][method] = evaluate(setting)
            except Exception as exc:  # noqa: BLE001 - one method's failure is reported
                skipped[f"{name}: {method}"] = str(exc).splitlines()[0] if str(exc) \
                    else type(exc).__name__
    return results, skipped
