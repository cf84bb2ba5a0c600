"""Render result tables as plain text, CSV, LaTeX, Markdown or JSON.

Shared by ``ash-explore evaluate``/``sweep`` and the dashboard's exports, so that a
table copied from any of them is the same table.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ash_core.errors import ParameterError
from ash_core.maths.metrics import METRIC_NAMES

FORMATS = ("table", "csv", "latex", "markdown", "json")


def _fmt(value: Any, percent: bool) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{100 * value:.2f}" if percent else f"{value:.4f}"
    return str(value)


#: first characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _safe_cell(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_STARTS):
        value = "'" + value  # shown as text, never evaluated (a split named "-2-3")
    return value.replace("\r", " ").replace("\n", " ")  # one cell, one line


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every text cell and column name that a spreadsheet would evaluate as a
    formula prefixed with ``'``; numbers stay numbers (a negative score is not text)."""
    out = df.rename(columns={c: _safe_cell(c) for c in df.columns})
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]):
            out[col] = [_safe_cell(v) for v in out[col]]
    return out


def render_frame(df: pd.DataFrame, fmt: str, percent: bool = True,
                 caption: str | None = None, raw_cols: Sequence[str] = ("p",)) -> str:
    """Render a DataFrame of fractions; text formats show percentages with 2 decimals.

    CSV and JSON keep full-precision fractions so that numbers can be re-used exactly.
    """
    if fmt == "csv":
        return csv_safe(df).to_csv(index=False)
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
    rows += [{"ood_set": f"Average ({g})", **m} for g, m in result_dict.get("groups", {}).items()]
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


def sweep_columns(ood_names: Sequence[str], groups: Sequence[str] = ()) -> list[str]:
    """Columns of the paper-style sweep table: FPR95/AUROC per OOD set and average (and
    each group's average, ``average (near)``), then ID accuracy shaped and unshaped."""
    cols = ["method", "p"]
    for name in [*ood_names, "average", *(f"average ({g})" for g in groups)]:
        cols += [f"{name}/fpr95", f"{name}/auroc"]
    return [*cols, "id_acc", "id_acc_unshaped"]


# --------------------------------------------------------------------------- labelled tables

_METRIC_TITLES = {"fpr95": "FPR95", "auroc": "AUROC", "aupr_in": "AUPR-In",
                  "aupr_out": "AUPR-Out", "id_acc": "ID accuracy",
                  "id_acc_unshaped": "ID accuracy, no shaping"}
_PLAIN_TITLES = {"ood_set": "OOD set", "method": "method", "p": "p",
                 "bundle": "bundle", "setting": "setting"}


def column_label(col: str) -> str:
    """A reader's header for a result column, with its unit: metric fractions are shown
    in %, their deltas in percentage points (pp); ``average/x`` is "avg X", ``set/x`` is
    "set X". Unknown columns keep their name."""
    if col in _PLAIN_TITLES:
        return _PLAIN_TITLES[col]
    if col.endswith("_delta") and col[: -len("_delta")] in _METRIC_TITLES:
        return f"Δ {_METRIC_TITLES[col[: -len('_delta')]]} (pp)"
    if col in _METRIC_TITLES:
        return f"{_METRIC_TITLES[col]} (%)"
    head, _, metric = col.rpartition("/")
    if head and metric in _METRIC_TITLES:
        if head.startswith("average"):  # "average" or a group's "average (near)"
            head = "avg" + head[len("average"):]
        return f"{head} {_METRIC_TITLES[metric]} (%)"
    return col


def labelled(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with reader headers (``column_label``); values unchanged."""
    return df.rename(columns={c: column_label(str(c)) for c in df.columns})


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` as readers see it: headers with units (``column_label``), fractions in %
    with 2 decimals, deltas signed in pp, ``p`` as given, missing values as "-"."""
    shown = df.copy()
    for col in shown.columns:
        name = str(col)
        if name.endswith("_delta"):
            shown[col] = ["-" if v is None or v != v else f"{100 * v:+.2f}" for v in shown[col]]
        elif name == "p":
            shown[col] = [_fmt_raw(v) for v in shown[col]]
        else:
            shown[col] = [_fmt(v, True) for v in shown[col]]
    return labelled(shown)


def render_labelled(df: pd.DataFrame, fmt: str, caption: str | None = None) -> str:
    """A result table for readers (``display_frame``) as table, markdown, latex or html.

    CSV and JSON keep the machine column names and full-precision fractions.
    """
    if fmt in ("csv", "json"):
        return render_frame(df, fmt)
    shown = display_frame(df)
    if fmt == "html":
        text = shown.to_html(index=False, escape=True, border=0)
        return (f"<p class='caption'>{html.escape(caption)}</p>\n{text}" if caption else text)
    return render_frame(shown, fmt, caption=caption, raw_cols=tuple(shown.columns))


# --------------------------------------------------------------------------- plain language


def _pct(v: float | None) -> str:
    return "n/a" if v is None or v != v else f"{100 * v:.2f}%"


def _pp(v: float) -> str:
    return f"{100 * v:+.2f} pp"


def headline(frame: pd.DataFrame, id_accuracy: Mapping[str, float | None], setting: str,
             convention: str = "id") -> str:
    """One plain sentence: what the setting does to average AUROC, FPR95 and accuracy.

    ``frame`` is ``evaluation_frame(result, base)`` (with ``*_delta`` columns).
    """
    avg = frame[frame["ood_set"] == "Average"].iloc[0]
    sets = frame["ood_set"].astype(str)  # not the Average row, nor a group's "Average (near)"
    n = int(((sets != "Average") & ~sets.str.startswith("Average (")).sum())
    au, fpr = float(avg["auroc"]), float(avg["fpr95"])
    au0, fpr0 = au - float(avg["auroc_delta"]), fpr - float(avg["fpr95_delta"])
    delta = round(100 * float(avg["auroc_delta"]), 2)
    better = "improves" if delta > 0 else "worsens" if delta < 0 else "barely changes"
    text = (f"Over {n} OOD set(s), {setting} {better} the average AUROC from {_pct(au0)} to "
            f"{_pct(au)} ({_pp(avg['auroc_delta'])}) and moves the average FPR95 from "
            f"{_pct(fpr0)} to {_pct(fpr)} ({_pp(avg['fpr95_delta'])}; lower is better, "
            f"{'ID' if convention == 'id' else 'OOD'} as the positive class)")
    shaped, unshaped = id_accuracy.get("shaped"), id_accuracy.get("unshaped")
    if shaped is not None and unshaped is not None:
        text += (f", while ID accuracy goes from {_pct(unshaped)} to {_pct(shaped)} "
                 f"({_pp(shaped - unshaped)})")
    return text + "."


def best_settings(sweep_df: pd.DataFrame, metric: str = "average/auroc") -> pd.DataFrame:
    """Per method, the sweep row with the best ``metric`` (lowest for FPR95): method, p,
    the metric, average FPR95/AUROC and ID accuracy. NaN rows are ignored."""
    lower = metric.endswith("fpr95")
    cols = list(dict.fromkeys(["method", "p", metric, "average/auroc", "average/fpr95",
                               "id_acc"]))
    rows = []
    for _, d in sweep_df.dropna(subset=[metric]).groupby("method", sort=False):
        rows.append(d.loc[d[metric].idxmin() if lower else d[metric].idxmax(), cols])
    return pd.DataFrame(rows, columns=cols).reset_index(drop=True)


#: the accuracy loss (fraction) the trade-off sentence calls a fall
ACC_DROP = 0.01


def tradeoff_sentence(sweep_df: pd.DataFrame, metric: str = "average/auroc") -> str:
    """One plain sentence on the trade-off over p: the best setting for ``metric`` and
    what it costs in ID accuracy against no shaping."""
    best = best_settings(sweep_df, metric)
    if best.empty:
        return "The sweep has no finite results to summarise."
    lower = metric.endswith("fpr95")
    top = best.sort_values(metric, ascending=lower).iloc[0]
    name = column_label(metric).replace(" (%)", "")
    where = ("no shaping" if top["method"] == "none" else str(top["method"])) + (
        "" if top["p"] != top["p"] else f" at p={top['p']:g}")
    text = f"Across the sweep, the best {name} is {_pct(top[metric])} ({where})"
    base = sweep_df[sweep_df["method"] == "none"]
    if base.empty or top["id_acc"] != top["id_acc"]:
        return text + "."
    acc0 = float(base["id_acc"].iloc[0])
    text += f", at an ID accuracy of {_pct(top['id_acc'])} against {_pct(acc0)} without shaping"
    d = sweep_df[sweep_df["method"] == top["method"]].dropna(subset=["p"]).sort_values("p")
    drop = d[d["id_acc"] < acc0 - ACC_DROP]
    if d.empty:
        return text + "."
    if drop.empty:
        return text + (f"; {top['method']} keeps ID accuracy within {100 * ACC_DROP:g} pp of "
                       "no shaping at every p swept.")
    return text + (f"; with {top['method']}, ID accuracy falls more than {100 * ACC_DROP:g} pp "
                   f"below no shaping from p={drop['p'].iloc[0]:g}.")


def tie_warnings(ties: Mapping[str, Any] | None, prefix: str = "") -> list[str]:
    """One line per OOD set whose ties are large, from the ``ties`` field of
    ``EvalResult.to_dict`` (``ash_core.maths.ties``): the tied share of (ID, OOD) pairs
    and the AUROC range over tie orders; none without that field."""
    if not ties:
        return []
    level = f"{100 * float(ties['level']):g}%"
    return [f"{prefix}warning: ties decide the AUROC of {name}: {_pct(r['tied'])} of "
            f"(ID, OOD) score pairs tie (above {level}); AUROC {_pct(r['auroc_min'])} to "
            f"{_pct(r['auroc_max'])} over tie orders, reported with ties counted 1/2"
            for name, r in ties["ood"].items()]
