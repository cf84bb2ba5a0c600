"""The operating point control (a share of ID kept, or a threshold on the score axis) and
its readout: the threshold, TPR, FPR, precision and how many images of each split it keeps
and flags, as a table and a CSV. Shared by the distributions and curves views."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ash_core import EvalResult
from ash_core.maths.operating import POOLED, OperatingPoint
from dashboard import uncertainty
from dashboard.op_state import OP_MODES, format_op, parse_op
from dashboard.views.common import Context, plain

#: the smallest share of ID kept (%) the control offers
KEPT_MIN = 0.1
HELP = ("Images scoring at or above the threshold are kept as in-distribution, below it "
        "flagged as OOD. 'share of ID kept' sets the threshold that keeps that share of the "
        "ID images (95: the FPR95 point); 'score threshold' sets it on the score axis.")


def control(ctx: Context, result: EvalResult) -> tuple[float, str]:
    """The control (bound to ``State.op``); returns (threshold, a label for the marks)."""
    s = ctx.state
    mode, value = parse_op(s.op) or ("kept", 95.0)
    st.session_state.setdefault("op_mode", mode)
    left, right = st.columns(2)
    left.radio("operating point", list(OP_MODES), key="op_mode", format_func=OP_MODES.get,
               horizontal=True, help=HELP)
    chosen = st.session_state["op_mode"]
    if chosen == "kept":
        # a link's value below KEPT_MIN starts at KEPT_MIN (the widget clamps it)
        st.session_state.setdefault("op_kept", value if mode == "kept" else 95.0)
        v = right.number_input("ID images kept (%)", KEPT_MIN, 100.0, step=0.5, key="op_kept",
                               help="the share of ID test images scoring at or above the "
                                    "threshold")
        threshold = uncertainty.threshold_for(result, "kept", float(v))
        label = f"{v:g}% of ID kept"
    else:
        if "op_score" not in st.session_state:
            st.session_state["op_score"] = value if mode == "score" else \
                uncertainty.threshold_for(result, "kept", value)
        v = right.number_input(f"{result.score} score threshold", key="op_score", step=0.1,
                               format="%.4f", help="images scoring at or above it are kept")
        threshold = float(v)
        label = f"threshold {threshold:.4g}"
    s.op = format_op(chosen, float(v))
    return threshold, label


def _pct(v: float | None) -> float | None:
    return None if v is None else 100 * v


def readout_numbers(ctx: Context, result: EvalResult, threshold: float) -> OperatingPoint:
    """The operating point's counts and rates (to mark them on a figure)."""
    return uncertainty.operating(ctx.bundle, result, threshold)


def readout(ctx: Context, result: EvalResult, threshold: float, label: str, key: str
            ) -> OperatingPoint:
    """The operating point's numbers under the figure, and its CSV."""
    op = readout_numbers(ctx, result, threshold)
    pooled = op.rates(POOLED)
    conv = "ID positive" if result.convention == "id" else "OOD positive"
    st.markdown(f"**Operating point ({plain(label)})**: threshold {threshold:.4g} on the "
                f"{plain(result.score)} score; TPR {_fmt(pooled['tpr'])}, FPR "
                f"{_fmt(pooled['fpr'])}, precision {_fmt(pooled['precision'])} over all OOD "
                f"sets ({conv}). It keeps {op.id_kept} of {op.id_total} ID images and lets "
                f"{sum(op.ood_kept.values())} of {sum(op.ood_total.values())} OOD images "
                "through.")
    frame = pd.DataFrame(op.rows())
    shown = frame.drop(columns=["threshold"])
    for col in ("flagged_share", "tpr", "fpr", "precision"):
        shown[col] = [_pct(v) if v == v else None for v in shown[col]]
    st.dataframe(shown, hide_index=True, width="stretch", key=f"{key}_op_table",
                 column_config={
                     "split": "split", "role": "role", "n": "images",
                     "kept": st.column_config.NumberColumn("kept (>= threshold)"),
                     "flagged": st.column_config.NumberColumn("flagged as OOD"),
                     "flagged_share": st.column_config.NumberColumn("flagged (%)",
                                                                    format="%.2f"),
                     "tpr": st.column_config.NumberColumn("TPR (%)", format="%.2f"),
                     "fpr": st.column_config.NumberColumn("FPR (%)", format="%.2f"),
                     "precision": st.column_config.NumberColumn("precision (%)",
                                                                format="%.2f")})
    export = frame.assign(bundle=ctx.bundle.name, setting=ctx.setting, score=result.score,
                          convention=result.convention, operating_point=label)
    st.download_button("Operating point (CSV)", export.to_csv(index=False),
                       file_name=f"{ctx.bundle.name}_operating_point.csv", mime="text/csv",
                       key=f"{key}_op_csv")
    return op


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"
