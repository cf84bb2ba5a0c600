"""Overview: FPR95 / AUROC / AUPR-In / AUPR-Out per OOD set and average, deltas, ID accuracy."""

from __future__ import annotations

import streamlit as st

from dashboard import figures, services
from dashboard.views.common import Context, pct, pp

METRICS = (("fpr95", "FPR95"), ("auroc", "AUROC"), ("aupr_in", "AUPR-In"),
           ("aupr_out", "AUPR-Out"))


def render(ctx: Context) -> None:
    result, base = ctx.result(), ctx.baseline()
    frame = services.metrics_frame(result, base)
    avg = frame[frame["ood_set"] == "Average"].iloc[0]
    acc = result.id_accuracy
    st.subheader(f"Overview: {ctx.setting} on {ctx.bundle.name}")
    st.caption(f"score: {result.score} - FPR convention: "
               f"{figures.convention_label(result.convention)} - averages over "
               f"{len(result.ood)} OOD set(s); deltas against no shaping (pp = percentage points)")
    cols = st.columns(6)
    for col, (m, label) in zip(cols, METRICS, strict=False):
        col.metric(f"avg {label}", pct(avg[m]), pp(avg[f"{m}_delta"]),
                   delta_color="inverse" if m == "fpr95" else "normal", border=True)
    if acc["shaped"] is not None:
        cols[4].metric("ID accuracy (shaped)", pct(acc["shaped"]),
                       pp(acc["shaped"] - acc["unshaped"]), border=True)
        cols[5].metric("ID accuracy (no shaping)", pct(acc["unshaped"]), border=True)
    else:
        cols[4].metric("ID accuracy", "n/a (no labels)", border=True)
    shown = services.percent(frame)
    st.dataframe(
        shown, hide_index=True, key="overview_table", width="stretch",
        column_config={
            "ood_set": "OOD set",
            **{m: st.column_config.NumberColumn(f"{label} (%)", format="%.2f")
               for m, label in METRICS},
            **{f"{m}_delta": st.column_config.NumberColumn(f"Δ {label} (pp)", format="%+.2f")
               for m, label in METRICS},
        },
        column_order=["ood_set", *[c for m, _ in METRICS for c in (m, f"{m}_delta")]],
    )
    st.plotly_chart(figures.overview_figure(frame, ctx.colors, ctx.setting, result.convention),
                    key="overview_chart")
