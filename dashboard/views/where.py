"""Where to ASH: shape after an inner block and replay the network (docs/where.md).

The paper's Figure 5 (ID accuracy against p, one curve per layer) and Table 6 (FPR95/AUROC per
layer at the chosen p) for bundles extracted with ``--layers``, following the sidebar's
method (an ASH variant), p, OOD selection and FPR convention. The layer sweep is computed once
per (bundle, variant) and cached on disk beside the bundle; later changes are lookups.
"""

from __future__ import annotations

import streamlit as st

from ash_core.layers import open_layers
from dashboard import figures_where, layer_replay
from dashboard.layer_replay import GRID
from dashboard.views import figure_io
from dashboard.views.common import Context, progress_bar

VARIANTS = ("ash-p", "ash-b", "ash-s", "ash-rand")


def render(ctx: Context) -> None:
    s, bundle = ctx.state, ctx.bundle
    st.subheader("Where to ASH: shaping after earlier blocks")
    if open_layers(bundle) is None:
        st.info(f"{bundle.name} has no layer maps. Build the demo ones with `make layers` and "
                "pick `cifar10_resnet20.layers` (or `..._resnet56.layers`) in the sidebar, or "
                "extract your own with `ash-explore extract --layers layer1,layer2,layer3` "
                "(timm ViTs: `--layers blocks.0,blocks.1,...`).")
        return
    method = s.method if s.method in VARIANTS else "ash-s"
    if method != s.method:
        st.caption(f"{s.method} is not a per-sample ASH variant; showing {method}.")
    p = float(min(GRID, key=lambda g: abs(g - float(s.p))))
    with progress_bar(f"Replaying every layer at p = 0..95 ({method}; once, then cached on "
                      "disk)") as progress:
        sweep = layer_replay.sweep_for(bundle, method, None, progress)
    figure_io.show(ctx, figures_where.figure5(sweep.grid, {n: sweep.accuracy(n)
                                                           for n in sweep.layers}, method, p),
                   "where_fig5", "where_figure5", f"{method}, every layer over p (at p={p:g})")
    st.markdown(f"**Table 6** at p = {p:g} ({method}), averages over "
                f"{len(ctx.ood)} OOD set(s); values in %")
    st.dataframe(figures_where.table6(sweep.table(p, s.convention, ctx.ood), s.convention),
                 key="where_table6")
    st.caption(f"Grid p = 0..95 step 5 (the sidebar's p rounded to {p:g}); inner layers: "
               "per-sample thresholds, energy score. Rows: "
               f"{sum(n for _, n in sweep.splits)} (a subset for the demos, see docs/where.md).")
