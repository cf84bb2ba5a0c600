"""Under the slider: what p means on this bundle and which engine computed the numbers."""

from __future__ import annotations

import streamlit as st

from dashboard import layer_replay, offer, replay
from dashboard.views import validated
from dashboard.views.common import Context, plain

#: views that never show the current setting's numbers nor its validated marks (their own
#: tables, or every layer): computing them there would only delay the page (an exact pass,
#: a validation search and a cube build on a 1280-d bundle before the leaderboard's first
#: row); the leaderboard shows the "validated parameters" toggle itself
OWN_NUMBERS = ("leaderboard", "across", "where")


def render(ctx: Context) -> None:
    """The p caption (kept count k, zeros), the engine caption and "verify at this p"."""
    s = ctx.state
    dim, zeros = replay.p_counts(ctx.bundle, ctx.layer)
    st.caption(plain(offer.p_caption(ctx.bundle, s.method, s.p, s.threshold, zeros, dim=dim)))
    if layer_replay.caption(s, ctx.bundle):
        st.caption(plain(layer_replay.caption(s, ctx.bundle)))
    if s.view in OWN_NUMBERS:
        return
    validated.render_toggle(ctx)
    try:
        rep = ctx.replay()
    except Exception:  # noqa: BLE001 - the view below shows the error
        return
    if rep.note:
        st.warning(f"Score cube not used: {plain(rep.note)}", icon=":material/warning:")
    left, right = st.columns([4, 1], vertical_alignment="center")
    left.caption(f"Numbers: {rep.label}.")
    if rep.engine == "cube" and right.button("verify at this p", key="verify",
                                             help="compute the exact value of every shown "
                                                  "number at this p and compare"):
        diff, n = replay.verify(ctx.bundle, ctx.ood, s.setting(), rep)
        st.info(f"Exact check at p = {s.p}: max |Δ| = {100 * diff:.2g} pp over {n} numbers "
                "(metrics per OOD set, averages and ID accuracy).", icon=":material/check:")
