"""ASH-RAND's spread over seeds: its survivors are drawn at random, so a single seed's
numbers are one draw among many. Shown on request (it evaluates every seed)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ash_core.reports.intervals import SPREAD_SEEDS
from ash_core.setting import Setting
from dashboard import uncertainty
from dashboard.views.common import METRICS, Context


def render(ctx: Context, setting: Setting) -> None:
    seeds = f"seeds {SPREAD_SEEDS[0]}-{SPREAD_SEEDS[-1]}"
    on = st.toggle(f"ASH-RAND: spread over {len(SPREAD_SEEDS)} seeds ({seeds})",
                   key="rand_spread",
                   help="ASH-RAND draws which activations survive at random; this evaluates "
                        "the same setting at each seed (one exact evaluation per seed)")
    if not on:
        st.caption(f"ASH-RAND's numbers above are of seed {setting.seed}; switch on the "
                   f"spread to see how much they move over {len(SPREAD_SEEDS)} seeds.")
        return
    spread = uncertainty.seed_spread(ctx.bundle, ctx.ood, setting)["average"]
    frame = pd.DataFrame([{"metric": f"avg {label}",
                           **{k: 100 * v for k, v in spread[m].items()}}
                          for m, label in METRICS])
    st.caption(f"Average metrics over {seeds} (%; std with ddof=1).")
    st.dataframe(frame, hide_index=True, key="rand_spread_table", width="content",
                 column_config={k: st.column_config.NumberColumn(k, format="%.2f")
                                for k in ("mean", "std", "min", "max")})
