"""Compare two settings (method / p / threshold) or two bundles side by side."""

from __future__ import annotations

import streamlit as st

from ash_core import THRESHOLD_MODES, get_method, list_methods
from dashboard import figures, services
from dashboard.state import COMPARE_MODES, P_MAX, P_MIN
from dashboard.views.common import Context, bind, commit, metrics_table, pct, store


def _setting_b(ctx: Context) -> None:
    s = store()
    c1, c2, c3 = st.columns(3)
    bind("bmethod")
    c1.selectbox("B: method", list_methods(), key="bmethod")
    commit("bmethod")
    spec = get_method(s.bmethod)
    if st.session_state.get("bthreshold", s.bthreshold) not in spec.thresholds:
        st.session_state["bthreshold"] = spec.thresholds[0]
    bind("bp")
    c2.slider("B: p", P_MIN, P_MAX, step=1, key="bp", disabled=not spec.has_p)
    bind("bthreshold")
    c3.radio("B: threshold", list(THRESHOLD_MODES), key="bthreshold", horizontal=True,
             disabled=len(spec.thresholds) < 2)
    commit("bp", "bthreshold")


def render(ctx: Context) -> None:
    s = store()
    st.subheader("Compare")
    bind("cmode")
    st.radio("Compare", list(COMPARE_MODES), format_func=COMPARE_MODES.get, key="cmode",
             horizontal=True)
    commit("cmode")
    res_a = ctx.result()
    label_a = f"{ctx.bundle.name}: {ctx.setting}"
    if s.cmode == "setting":
        _setting_b(ctx)
        bundle_b, ood_b = ctx.bundle, ctx.ood
        res_b = services.evaluate(bundle_b, ood_b, s.bmethod, s.bp_value, s.bthreshold,
                                  s.score, s.convention, s.engine)
        label_b = f"{ctx.bundle.name}: {s.setting_label(s.bmethod, s.bp_value, s.bthreshold)}"
    else:
        options = list(ctx.bundles)
        if s.bbundle and s.bbundle not in options:
            options.append(s.bbundle)  # any directory, e.g. from a shared link
        others = [b for b in options if b != s.bundle] or options
        if s.bbundle not in options:
            s.bbundle = others[0]
            st.session_state.pop("bbundle", None)
        bind("bbundle")
        st.selectbox("B: bundle", options, key="bbundle")
        commit("bbundle")
        bundle_b = services.get_bundle(s.bbundle)
        if bundle_b.dim != ctx.bundle.dim:
            st.error(f"Bundles have different feature dimensions ({ctx.bundle.name}: "
                     f"D={ctx.bundle.dim}, {bundle_b.name}: D={bundle_b.dim}): their units "
                     "cannot be compared one to one. The metrics below are computed "
                     "separately per bundle, each with its own head.", icon=":material/warning:")
        avail = services.nonempty_ood(bundle_b)[0]
        ood_b = [n for n in ctx.ood if n in avail]
        if not ood_b:
            ood_b = avail
            st.warning(f"{bundle_b.name} has none of the selected OOD sets; using all of its "
                       f"own: {', '.join(avail)}")
        res_b = services.evaluate(bundle_b, ood_b, s.method, s.p_value, s.threshold, s.score,
                                  s.convention, s.engine)
        label_b = f"{bundle_b.name}: {ctx.setting}"
    fa = services.metrics_frame(res_a, ctx.baseline())
    fb = services.metrics_frame(res_b, services.baseline(bundle_b, ood_b, s.score,
                                                         s.convention))
    left, right = st.columns(2)
    for col, label, res, frame, key in ((left, "A", res_a, fa, "cmp_a"),
                                        (right, "B", res_b, fb, "cmp_b")):
        with col:
            st.markdown(f"**{label}: {label_a if label == 'A' else label_b}**")
            avg = frame[frame["ood_set"] == "Average"].iloc[0]
            m1, m2, m3 = st.columns(3)
            m1.metric("avg AUROC", pct(avg["auroc"]), border=True)
            m2.metric("avg FPR95", pct(avg["fpr95"]), border=True)
            m3.metric("ID accuracy", pct(res.id_accuracy["shaped"]), border=True)
            metrics_table(frame, key)
    st.plotly_chart(figures.compare_figure(fa, fb, label_a, label_b, s.convention),
                    key="compare_chart")
