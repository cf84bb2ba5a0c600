"""Overview: FPR95 / AUROC / AUPR-In / AUPR-Out per OOD set and average, deltas, ID accuracy."""

from __future__ import annotations

import streamlit as st

from dashboard import cache, figures
from dashboard.views.common import METRICS, Context, metrics_table, pct, plain, pp


def render(ctx: Context) -> None:
    result, base = ctx.result(), ctx.baseline()
    frame = cache.metrics_frame(result, base)
    avg = frame[frame["ood_set"] == "Average"].iloc[0]
    acc = result.id_accuracy
    st.subheader(f"Overview: {ctx.setting} on {plain(ctx.bundle.name)}")
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
    metrics_table(frame, "overview_table", deltas=True)
    st.plotly_chart(figures.overview_figure(frame, ctx.colors, ctx.setting, result.convention),
                    key="overview_chart")
