"""Per-image inspector: image, sorted activations before/after, top-5, energy and percentile."""

from __future__ import annotations

import streamlit as st

from dashboard import figures, services
from dashboard.state import INSPECT_MODES
from dashboard.views.common import Context, bind, commit, store


def _pick(ctx: Context) -> tuple[str, int]:
    s = store()
    names = services.split_names(ctx.bundle, ctx.ood)
    bind("imode")
    st.radio("Choose a sample", list(INSPECT_MODES), format_func=INSPECT_MODES.get,
             key="imode", horizontal=True)
    commit("imode")
    if s.imode == "index":
        if s.iset not in names:
            s.iset = names[0]
            st.session_state.pop("iset", None)
        c1, c2 = st.columns(2)
        bind("iset")
        c1.selectbox("Set", names, key="iset")
        commit("iset")
        n = len(ctx.bundle.split(s.iset))
        if st.session_state.get("idx", s.idx) >= n:
            st.session_state["idx"] = 0
        bind("idx")
        c2.number_input(f"Index (0-{n - 1})", min_value=0, max_value=n - 1, step=1, key="idx")
        commit("idx")
        return s.iset, int(s.idx)
    result = ctx.result()
    table = services.worst(result, ctx.bundle, s.imode, n=10)
    if table.empty:
        st.info("No samples to list.")
        return names[0], 0
    labels = [f"{r.set} #{r.index} (score {r.score:.3g}, ID percentile {r.id_percentile:.1f})"
              for r in table.itertuples()]
    st.dataframe(table, hide_index=True, key="worst_table", width="stretch")
    if "ipick" not in st.session_state or st.session_state["ipick"] >= len(labels):
        # a shared link names the sample (iset, idx): select its row when it is listed
        match = table.index[(table["set"] == s.iset) & (table["index"] == s.idx)]
        st.session_state["ipick"] = int(match[0]) if len(match) else 0
    choice = st.selectbox("Inspect", range(len(labels)), format_func=labels.__getitem__,
                          key="ipick")
    row = table.iloc[int(choice or 0)]
    s.iset, s.idx = str(row["set"]), int(row["index"])
    return s.iset, s.idx


def render(ctx: Context) -> None:
    s = ctx.state
    st.subheader(f"Inspector: {ctx.setting}")
    split, index = _pick(ctx)
    insp = services.inspect(ctx.bundle, ctx.ood, s.method, s.p_value, s.threshold, split, index,
                            s.engine)
    left, right = st.columns([1, 3])
    with left:
        img = services.sample_image(ctx.bundle, split, index, ctx.args.data_root)
        if img.kind == "thumbnail":
            st.image(img.image, width=160, caption=f"{split} #{index} (bundled thumbnail)")
        elif img.kind == "file":
            st.image(img.path, width=160, caption=f"{split} #{index} ({img.source})")
        else:
            st.image(figures.placeholder_image(), width=160, caption=f"{split} #{index}")
            st.info(f"No image: {img.message}", icon=":material/image:")
        st.metric("energy before", f"{insp.energy_before:.3f}",
                  help="energy score of this sample without shaping")
        st.metric("energy after", f"{insp.energy_after:.3f}",
                  f"{insp.energy_after - insp.energy_before:+.3f}")
        st.metric("ID percentile before", f"{insp.percentile_before:.1f}%",
                  help="share of ID samples (no shaping) with a lower or equal energy")
        st.metric("ID percentile after", f"{insp.percentile_after:.1f}%",
                  help="share of ID samples (same shaping) with a lower or equal energy")
        st.caption(f"prediction: {insp.predicted_before} -> {insp.predicted_after}; "
                   f"{insp.n_kept}/{len(insp.kept)} units kept")
    with right:
        st.plotly_chart(figures.activations_figure(insp, ctx.setting), key="activations_chart")
        st.plotly_chart(figures.topk_figure(insp, ctx.setting), key="topk_chart")
