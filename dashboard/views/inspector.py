"""Per-image inspector: image, sorted activations before/after, top-5, energy and percentile."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import cache, figures, inspection, replay
from dashboard.images import SampleImage, sample_image
from dashboard.state import INSPECT_MODES
from dashboard.views import figure_io
from dashboard.views.cards import CARD_PX, card_row
from dashboard.views.common import Context, bind, commit, plain, store

GALLERY_COLUMNS = 5


def _by_index(ctx: Context, names: list[str]) -> tuple[str, int]:
    s = store()
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


def _worst_table(table: pd.DataFrame, score: str) -> None:
    """The worst-N list with headers, units and one number format per column."""
    st.dataframe(table, hide_index=False, key="worst_table", width="stretch",
                 column_config={
                     "_index": st.column_config.NumberColumn("Rank", format="%d"),
                     "set": "Set",
                     "index": st.column_config.NumberColumn("Sample index", format="%d"),
                     "score": st.column_config.NumberColumn(f"Score ({score})",
                                                            format="%.3f"),
                     "id_percentile": st.column_config.NumberColumn(
                         "Percentile within ID scores (%)", format="%.1f"),
                 })


def _thumb(img: SampleImage):
    return img.image if img.kind == "thumbnail" else img.path


def _gallery(ctx: Context, table: pd.DataFrame) -> None:
    """Pictures of the listed samples, where the bundle or the data root has them."""
    pics = inspection.gallery(ctx.bundle, table, ctx.args.data_root)
    if not pics:
        st.caption("No pictures for these samples: the bundle has no thumbnails for their "
                   "sets and no image was found under the data root.")
        return
    cols = st.columns(GALLERY_COLUMNS)
    for j, (i, img) in enumerate(pics):
        row = table.iloc[i]
        cols[j % GALLERY_COLUMNS].image(
            _thumb(img), width=96,
            caption=plain(f"{i}: {row['set']} #{row['index']} ({row['score']:.3f})"))


def _from_list(ctx: Context, names: list[str]) -> tuple[str, int]:
    s = store()
    table = inspection.worst(ctx.result(), ctx.bundle, s.imode, n=10)
    if table.empty:
        st.info("No samples to list.")
        return names[0], 0
    _worst_table(table, s.score)
    _gallery(ctx, table)
    labels = [f"{i}: {r.set} #{r.index} (score {r.score:.3f}, ID percentile "
              f"{r.id_percentile:.1f}%)" for i, r in enumerate(table.itertuples())]
    if "ipick" not in st.session_state or st.session_state["ipick"] >= len(labels):
        # a shared link names the sample (iset, idx): select its row when it is listed
        match = table.index[(table["set"] == s.iset) & (table["index"] == s.idx)]
        st.session_state["ipick"] = int(match[0]) if len(match) else 0
    choice = st.selectbox("Inspect", range(len(labels)), format_func=labels.__getitem__,
                          key="ipick")
    row = table.iloc[int(choice or 0)]
    s.iset, s.idx = str(row["set"]), int(row["index"])
    return s.iset, s.idx


def _pick(ctx: Context) -> tuple[str, int]:
    s = store()
    names = inspection.split_names(ctx.bundle, ctx.ood)
    bind("imode")
    st.radio("Choose a sample", list(INSPECT_MODES), format_func=INSPECT_MODES.get,
             key="imode", horizontal=True)
    commit("imode")
    return _by_index(ctx, names) if s.imode == "index" else _from_list(ctx, names)


def _image(ctx: Context, split: str, index: int) -> None:
    img = sample_image(ctx.bundle, split, index, ctx.args.data_root)
    label = plain(f"{split} #{index}")
    if img.kind == "thumbnail":
        st.image(img.image, width=160, caption=f"{label} (bundled thumbnail)")
    elif img.kind == "file":
        st.image(img.path, width=160, caption=plain(f"{split} #{index} ({img.source})"))
    else:
        st.image(figures.placeholder_image(), width=160, caption=label)
        st.info(f"No image: {plain(img.message)}", icon=":material/image:")


def _score_cards(cards, name: str, before: float, after: float, pct_before: float,
                 pct_after: float, note: str) -> None:
    """The sample's own score (the setting's: KNN, GEN, MSP, ...), before and after, and
    its percentile within the ID scores of the same result."""
    cards.metric(f"{name} before", f"{before:.4g}", border=True, width=CARD_PX,
                 help=f"this sample's {name} score; {note}")
    cards.metric(f"{name} after", f"{after:.4g}", f"{after - before:+.4g}", delta_color="off",
                 border=True, width=CARD_PX,
                 help=f"this sample's {name} score with the setting; higher means more "
                      "ID-like")
    cards.metric("ID percentile before", f"{pct_before:.1f}%", border=True, width=CARD_PX,
                 help=f"share of ID samples with a lower or equal {name} score (before)")
    cards.metric("ID percentile after", f"{pct_after:.1f}%", border=True, width=CARD_PX,
                 help=f"share of ID samples with a lower or equal {name} score (after)")


def render(ctx: Context) -> None:
    s = ctx.state
    st.subheader(f"Inspector: {ctx.setting}")
    split, index = _pick(ctx)
    shaped = replay.replay(ctx.bundle, ctx.ood, s.setting(score="energy", convention="id"),
                           s.engine).result
    base = cache.baseline(ctx.bundle, ctx.ood, "energy", "id")
    insp = inspection.inspect(ctx.bundle, ctx.ood, shaped, base, split, index,
                              ctx.args.data_root)
    result = ctx.result()
    own, note = (None, "") if result.score == "energy" else \
        inspection.own_score(ctx.bundle, ctx.ood, result, split, index)
    cards = card_row("inspector_cards")  # one width, wrapping: readable from 800 px up
    if own is not None:
        _score_cards(cards, own.name, own.before, own.after, own.percentile_before,
                     own.percentile_after, note)
    energy_help = "" if own is None else (f" (the energy of the logits, not the {own.name} "
                                          f"score {s.method} detects with)")
    cards.metric("energy before", f"{insp.energy_before:.3f}", border=True, width=CARD_PX,
                 help="energy score of this sample without shaping" + energy_help)
    cards.metric("energy after", f"{insp.energy_after:.3f}",
                 f"{insp.energy_after - insp.energy_before:+.3f}", delta_color="off",
                 border=True, width=CARD_PX,
                 help="a change in energy is neither good nor bad by itself: higher means "
                      "more ID-like, right for ID samples and wrong for OOD samples"
                      + energy_help)
    if own is None:
        cards.metric("ID percentile before", f"{insp.percentile_before:.1f}%", border=True,
                     width=CARD_PX, help="share of ID samples (no shaping) with a lower or "
                                         "equal energy")
        cards.metric("ID percentile after", f"{insp.percentile_after:.1f}%", border=True,
                     width=CARD_PX, help="share of ID samples (same shaping) with a lower or "
                                         "equal energy")
    if result.score != "energy" and own is None:
        st.caption(plain(f"Scored by {result.score}; {note}. The cards show energies."))
    left, right = st.columns([1, 3])
    with left:
        _image(ctx, split, index)
        variant = inspection.read_variant(ctx.bundle, s.method)
        kept = (f"{insp.n_kept} of {len(insp.kept)} units kept ({insp.kept_rule})"
                if variant is None else variant)
        st.caption(plain(f"prediction: {insp.predicted_before} -> {insp.predicted_after}; "
                         f"{kept}"))
    with right:
        titles = None if variant is None else ("stored features",
                                               f"features {s.method} read ({ctx.setting})")
        here = f"{ctx.setting}, {split} #{index}"
        figure_io.show(ctx, figures.activations_figure(insp, ctx.setting, titles=titles,
                                                       theme=ctx.theme),
                       "activations_chart", f"activations_{split}_{index}", here)
        figure_io.show(ctx, figures.topk_figure(insp, ctx.setting, theme=ctx.theme),
                       "topk_chart", f"top5_{split}_{index}", here)
