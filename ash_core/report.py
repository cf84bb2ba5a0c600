"""Render result tables as plain text, CSV, LaTeX, Markdown or JSON.

Shared by ``ash-explore evaluate``/``sweep`` and the dashboard's exports, so that a
table copied from any of them is the same table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .errors import ParameterError
from .metrics import METRIC_NAMES

FORMATS = ("table", "csv", "latex", "markdown", "json")


def _fmt(value: Any, percent: bool) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{100 * value:.2f}" if percent else f"{value:.4f}"
    return str(value)


def render_frame(df: pd.DataFrame, fmt: str, percent: bool = True,
                 caption: str | None = None, raw_cols: Sequence[str] = ("p",)) -> str:
    """Render a DataFrame of fractions; text formats show percentages with 2 decimals.

    CSV and JSON keep full-precision fractions so that numbers can be re-used exactly.
    """
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return df.to_json(orient="records", indent=2)
    shown = df.copy()
    for col in shown.columns:
        if col in raw_cols:
            shown[col] = [_fmt_raw(v) for v in shown[col]]
        else:
            shown[col] = [_fmt(v, percent) for v in shown[col]]
    if fmt == "markdown":
        header = "| " + " | ".join(map(str, shown.columns)) + " |"
        sep = "|" + "|".join("---" for _ in shown.columns) + "|"
        body = ["| " + " | ".join(row) + " |" for row in shown.astype(str).values.tolist()]
        text = "\n".join([header, sep, *body]) + "\n"
        return (f"{caption}\n\n{text}" if caption else text)
    if fmt == "latex":
        cols = list(map(str, shown.columns))
        lines = [
            "\\begin{table}[t]",
            "\\centering",
            "\\begin{tabular}{" + "l" * 1 + "r" * (len(cols) - 1) + "}",
            "\\toprule",
            " & ".join(_latex_escape(c) for c in cols) + " \\\\",
            "\\midrule",
        ]
        for row in shown.astype(str).values.tolist():
            lines.append(" & ".join(_latex_escape(v) for v in row) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        if caption:
            lines.append(f"\\caption{{{_latex_escape(caption)}}}")
        lines.append("\\end{table}")
        return "\n".join(lines) + "\n"
    if fmt == "table":
        text = shown.to_string(index=False)
        return (f"{caption}\n{text}\n" if caption else text + "\n")
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _fmt_raw(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


_LATEX_SPECIAL = {"\\": "\\textbackslash{}", "_": "\\_", "%": "\\%", "&": "\\&", "#": "\\#",
                  "$": "\\$", "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}",
                  "^": "\\textasciicircum{}"}
_LATEX_RE = re.compile("|".join(map(re.escape, _LATEX_SPECIAL)))


def _latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (one pass, so the braces of
    ``\\textbackslash{}`` are not escaped again)."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group(0)], text)


def evaluation_frame(result_dict: Mapping[str, Any],
                     base_dict: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per OOD set plus an "Average" row, from ``EvalResult.to_dict()``.

    With ``base_dict`` (another result's ``to_dict()``, e.g. no shaping) the frame also
    has ``{metric}_delta`` columns: this result minus the base, per row.
    """
    rows = [{"ood_set": name, **m} for name, m in result_dict["ood"].items()]
    rows.append({"ood_set": "Average", **result_dict["average"]})
    df = pd.DataFrame(rows, columns=["ood_set", *METRIC_NAMES])
    if base_dict is not None:
        base = evaluation_frame(base_dict).set_index("ood_set")
        missing = [n for n in df["ood_set"] if n not in base.index]
        if missing:
            raise ParameterError(
                f"the base result lacks OOD set(s) {', '.join(missing)}; compare results "
                "evaluated on the same OOD sets."
            )
        for m in METRIC_NAMES:
            df[f"{m}_delta"] = df[m].to_numpy() - base.loc[df["ood_set"], m].to_numpy()
    return df


def dumps_json(obj: Any) -> str:
    """``obj`` as indented JSON, keys in their given order."""
    return json.dumps(obj, indent=2, sort_keys=False)


def sweep_columns(ood_names: Sequence[str]) -> list[str]:
    """Columns of the paper-style sweep table: FPR95/AUROC per OOD set and average, then
    ID accuracy shaped and unshaped."""
    cols = ["method", "p"]
    for name in [*ood_names, "average"]:
        cols += [f"{name}/fpr95", f"{name}/auroc"]
    return [*cols, "id_acc", "id_acc_unshaped"]
