"""The sidebar: bundle, ID split, OOD sets, method, threshold, score, convention, view."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ash_core import CONVENTIONS, THRESHOLD_MODES, get_method, list_methods, list_scores
from ash_core.scores import SCORES
from dashboard import figures, services
from dashboard.state import ENGINES, VIEWS, State
from dashboard.views.common import STORE, Context, bind, commit, store

SCORE_LABELS = {"energy": "energy", "msp": "MSP", "maxlogit": "max logit"}


def init_store(args: services.AppArgs) -> None:
    """On a session's first run, build the state from the URL (validated)."""
    if STORE in st.session_state:
        return
    default = args.bundles[0] if args.bundles else services.DEMO_BUNDLE
    state, notes = State.from_query(st.query_params.to_dict(), default_bundle=default)
    st.session_state[STORE] = state
    st.session_state["_url_notes"] = notes


def _bundle_label(path: str) -> str:
    p = Path(path)
    return p.name if p.parent.name == "cached_features" else str(path)


def _open_path() -> None:
    path = st.session_state.get("bundle_path", "").strip()
    if path:
        store().bundle = path
        st.session_state["bundle"] = path


def _bundle_changed() -> None:
    commit("bundle")
    store().ood = None  # a new bundle starts with all of its OOD sets
    st.session_state.pop("ood", None)


def render(args: services.AppArgs) -> Context:
    init_store(args)
    s = store()
    bundles = services.discover_bundles(args.bundles)
    if s.bundle and s.bundle not in bundles:
        bundles = [s.bundle, *bundles]
    ctx = Context(state=s, args=args, bundles=bundles)
    with st.sidebar:
        st.title("ASH Explorer")
        st.caption("Activation shaping (Djurisic et al., ICLR 2023) for OOD detection")
        for note in st.session_state.get("_url_notes", []):
            st.warning(f"Link: {note}")
        bind("bundle")
        st.selectbox("Bundle", bundles, key="bundle", on_change=_bundle_changed,
                     format_func=_bundle_label,
                     help="Bundles under cached_features/ and those given on the command line")
        with st.expander("Open another bundle directory"):
            st.text_input("Bundle directory", key="bundle_path", on_change=_open_path,
                          placeholder="path/to/bundle")
        commit("bundle")
        try:
            ctx.bundle = services.get_bundle(s.bundle)
        except Exception as exc:  # noqa: BLE001
            ctx.error = f"Cannot open bundle {s.bundle!r}: {services.error_text(exc)}"
            st.error(ctx.error, icon=":material/warning:")
        if ctx.bundle is not None:
            _setting_controls(ctx)
        else:
            _method_controls()
        with st.expander("Numbers"):
            bind("engine")
            st.radio("Slider engine", list(ENGINES), key="engine",
                     format_func=lambda k: ENGINES[k].split(":")[0],
                     help="\n".join(f"- **{k}**: {v}" for k, v in ENGINES.items()))
            commit("engine")
        st.divider()
        bind("view")
        st.radio("View", list(VIEWS), format_func=VIEWS.get, key="view")
        commit("view")
    return ctx


def _setting_controls(ctx: Context) -> None:
    s, bundle = ctx.state, ctx.bundle
    info = bundle.id_split
    st.selectbox("ID split", [info.name], key="id_split", disabled=True,
                 help=f"the bundle's ID test split ({len(info)} samples); id_fit: "
                      f"{bundle.id_fit.name if bundle.id_fit else 'none'}")
    options, empty = services.nonempty_ood(bundle)
    if empty:
        st.warning(f"OOD set(s) with no samples, left out: {', '.join(empty)}", icon=":material/warning:")
    chosen = list(options) if s.ood is None else [n for n in s.ood if n in options]
    if "ood" in st.session_state:
        st.session_state["ood"] = [n for n in st.session_state["ood"] if n in options]
    else:
        st.session_state["ood"] = chosen
    st.multiselect("OOD sets", options, key="ood", help="OOD splits to evaluate")
    commit("ood")
    ctx.ood = list(s.ood or [])
    ctx.colors = figures.set_colors([sp.name for sp in bundle.ood_splits])
    _method_controls()


def _method_controls() -> None:
    s = store()
    methods = list_methods()
    bind("method")
    st.selectbox("Method", methods, key="method",
                 help="\n".join(f"- **{m}**: {get_method(m).description}" for m in methods))
    commit("method")
    spec = get_method(s.method)
    if st.session_state.get("threshold", s.threshold) not in spec.thresholds:
        st.session_state["threshold"] = spec.thresholds[0]
    bind("threshold")
    st.radio("Threshold", list(THRESHOLD_MODES), key="threshold", horizontal=True,
             disabled=len(spec.thresholds) < 2,
             help="\n".join(f"- **{k}**: {v}" for k, v in THRESHOLD_MODES.items()))
    bind("score")
    st.selectbox("Score", list_scores(), key="score",
                 format_func=lambda k: SCORE_LABELS.get(k, k),
                 help="\n".join(f"- **{k}**: {v[1]}" for k, v in SCORES.items()))
    bind("convention")
    st.radio("FPR convention", list(CONVENTIONS), key="convention",
             format_func=lambda k: "ID positive (ASH paper)" if k == "id"
             else "OOD positive (OpenOOD)",
             help="\n".join(f"- **{k}**: {v}" for k, v in CONVENTIONS.items()))
    commit("threshold", "score", "convention")
