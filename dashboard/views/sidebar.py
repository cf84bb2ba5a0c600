"""The sidebar: bundle, ID split, OOD sets, method, threshold, score, convention, view."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from ash_core import CONVENTIONS, THRESHOLD_MODES, Bundle, get_method, list_methods
from ash_core.features import get_feature_score, list_feature_scores
from ash_core.layers import PENULTIMATE
from ash_core.maths.scores import SCORES
from ash_core.policy import ENGINES
from dashboard import cache, figures, layer_replay, offer
from dashboard.config import DEMO_BUNDLE, AppArgs
from dashboard.paths import BundlePolicy
from dashboard.state import DEFAULT_METHOD, ENGINE_HELP, VIEWS, State, default_p
from dashboard.views.common import (
    STORE,
    Context,
    bind,
    commit,
    plain,
    start_at_default_p,
    store,
)

SCORE_LABELS = {"energy": "energy", "msp": "MSP", "maxlogit": "max logit"}
#: each score's meaning: on logits, then on features (fitted on id_fit)
SCORE_HELP = {**{k: v[1] for k, v in SCORES.items()},
              **{k: f"{get_feature_score(k).description} (on the shaped features, fitted "
                    f"on id_fit)" for k in list_feature_scores()}}
NOTES = "_url_notes"


def init_store(args: AppArgs) -> bool:
    """On a session's first run, build the state from the URL (validated); True then."""
    if STORE in st.session_state:
        return False
    default = args.bundles[0] if args.bundles else DEMO_BUNDLE
    state, notes = State.from_query(st.query_params.to_dict(), default_bundle=default)
    st.session_state[STORE] = state
    st.session_state[NOTES] = notes
    return True


def _bundle_label(path: str) -> str:
    p = Path(path)
    return p.name if p.parent.name == "cached_features" else str(path)


def _switch_bundle(path: str) -> None:
    """Open another bundle with its own OOD sets (none of the previous selection)."""
    s = store()
    s.bundle = path
    s.ood = None
    for key in ("ood", "iset", "ipick"):
        st.session_state.pop(key, None)


def _open_path() -> None:
    path = st.session_state.get("bundle_path", "").strip()
    if path:
        _switch_bundle(path)
        st.session_state["bundle"] = path


def _bundle_changed() -> None:
    _switch_bundle(st.session_state["bundle"])


def render(args: AppArgs) -> Context:
    fresh = init_store(args)
    s = store()
    policy = BundlePolicy.from_args(args)
    bundles = policy.discover(args.bundles)
    if s.bundle and s.bundle not in bundles:
        bundles = [s.bundle, *bundles]
    ctx = Context(state=s, args=args, bundles=bundles, policy=policy)
    with st.sidebar:
        st.title("ASH Explorer")
        st.caption("Activation shaping (Djurisic et al., ICLR 2023) for OOD detection")
        notes_box = st.container()
        _bundle_controls(ctx)
        if ctx.bundle is not None:
            st.session_state[NOTES] += _fit_to_bundle(ctx, fresh)
            _setting_controls(ctx)
        else:
            _method_controls(list_methods(), lambda m: list(get_method(m).threshold_modes),
                             None)
        with st.expander("Advanced: numbers engine"):
            bind("engine")
            st.radio("Engine", list(ENGINES), key="engine",
                     help="\n".join(f"- **{k}**: {ENGINE_HELP[k]}" for k in ENGINES))
            commit("engine")
        st.divider()
        bind("view")
        st.radio("View", list(VIEWS), format_func=VIEWS.get, key="view")
        commit("view")
        for note in st.session_state[NOTES]:
            notes_box.warning(f"Link: {plain(note)}")
    return ctx


def _bundle_controls(ctx: Context) -> None:
    s = ctx.state
    bind("bundle")
    st.selectbox("Bundle", ctx.bundles, key="bundle", on_change=_bundle_changed,
                 format_func=_bundle_label,
                 help="Bundles given on the command line and those under the bundle roots")
    with st.expander("Open another bundle directory"):
        st.text_input("Bundle directory", key="bundle_path", on_change=_open_path,
                      placeholder="path/to/bundle", max_chars=1024,
                      help="a bundle the server was started with, or one under its bundle "
                           "roots (--bundle-root DIR)")
    commit("bundle")
    try:
        ctx.bundle = cache.get_bundle(s.bundle, ctx.policy)
    except Exception as exc:  # noqa: BLE001
        ctx.error = f"Cannot open this bundle: {plain(cache.error_text(exc))}"
        st.error(ctx.error, icon=":material/warning:")


def _fit_to_bundle(ctx: Context, fresh: bool) -> list[str]:
    """Make the state something this bundle can serve; notes for what a link asked for."""
    s, bundle = ctx.state, ctx.bundle
    notes = s.drop_unknown_ood(cache.nonempty_ood(bundle)[0])
    methods = offer.methods_for(bundle)
    if s.method not in methods:
        new = DEFAULT_METHOD if DEFAULT_METHOD in methods else methods[0]
        notes.append(f"{s.method} is not available for this bundle (no id_fit split); "
                     f"showing {new}")
        s.method, s.p = new, default_p(new)
        for key in ("method", "p"):
            st.session_state.pop(key, None)
    modes = offer.thresholds_for(bundle, s.method)
    if s.threshold not in modes:
        notes.append(f"threshold {s.threshold} is not available for {s.method} on this "
                     f"bundle; showing {modes[0]}")
        s.threshold = modes[0]
        st.session_state.pop("threshold", None)
    scores = offer.scores_for(bundle, s.method)
    if scores and s.score not in scores:
        notes.append(f"score {s.score} is not available for {s.method} on this bundle; "
                     f"showing {scores[0]}")
        s.score = scores[0]
        st.session_state.pop("score", None)
    if s.bmethod not in methods:
        s.bmethod, s.bp = "none", default_p("none")
    if s.bthreshold not in offer.thresholds_for(bundle, s.bmethod):
        s.bthreshold = offer.thresholds_for(bundle, s.bmethod)[0]
    s.layer, layer_notes = layer_replay.fit(bundle, s.layer)
    if layer_notes:
        st.session_state.pop("layer", None)
    return notes + layer_notes if fresh else []


def _setting_controls(ctx: Context) -> None:
    s, bundle = ctx.state, ctx.bundle
    info = bundle.id_split
    st.selectbox("ID split", [info.name], key="id_split", disabled=True,
                 help=plain(f"the bundle's ID test split ({len(info)} samples); id_fit: "
                            f"{bundle.id_fit.name if bundle.id_fit else 'none'}"))
    options, empty = cache.nonempty_ood(bundle)
    if empty:
        st.warning(f"OOD set(s) with no samples, left out: {plain(', '.join(empty))}",
                   icon=":material/warning:")
    chosen = list(options) if s.ood is None else [n for n in s.ood if n in options]
    if "ood" in st.session_state:
        st.session_state["ood"] = [n for n in st.session_state["ood"] if n in options]
    else:
        st.session_state["ood"] = chosen
    st.multiselect("OOD sets", options, key="ood", help="OOD splits to evaluate")
    commit("ood")
    ctx.ood = list(s.ood or [])
    ctx.colors = figures.set_colors([sp.name for sp in bundle.ood_splits])
    _method_controls(offer.methods_for(bundle), lambda m: offer.thresholds_for(bundle, m),
                     bundle)
    missing = offer.missing_caption(bundle)
    if missing:
        st.caption(plain(missing))
    _layer_control(ctx)


def _layer_control(ctx: Context) -> None:
    """Where shaping happens, for bundles with layer maps (dashboard/layer_replay.py)."""
    layers = layer_replay.options(ctx.bundle)
    if not layers:
        return
    s = ctx.state
    why = layer_replay.why_not(s)
    bind("layer")
    st.selectbox("Layer", layers, key="layer", disabled=why is not None,
                 help="shape after this block's output and replay the rest of the network "
                      "(Overview, Distributions and Curves; per-sample ASH variants only). "
                      "penultimate: the features, as everywhere else")
    commit("layer")
    if why and s.layer != PENULTIMATE:
        st.caption(plain(f"Layer {s.layer} is off: {why}."))


def _method_controls(methods: list[str], modes_for: Callable[[str], list[str]],
                     bundle: Bundle | None) -> None:
    """Method, threshold mode (those ``modes_for(method)`` allows), score (those the
    method takes and ``bundle`` serves), convention."""
    s = store()
    bind("method")
    st.selectbox("Method", methods, key="method", on_change=start_at_default_p,
                 args=("method", "p"),
                 help="\n".join(f"- **{m}**: {get_method(m).description}" for m in methods))
    commit("method")
    modes = modes_for(s.method)
    if st.session_state.get("threshold", s.threshold) not in modes:
        st.session_state["threshold"] = modes[0]
    bind("threshold")
    st.radio("Threshold", modes, key="threshold", horizontal=True, disabled=len(modes) < 2,
             help="\n".join(f"- **{k}**: {v}" for k, v in THRESHOLD_MODES.items()))
    _score_control(s.method, bundle)
    bind("convention")
    st.radio("FPR convention", list(CONVENTIONS), key="convention",
             format_func=lambda k: "ID positive (ASH paper)" if k == "id"
             else "OOD positive (OpenOOD)",
             help="\n".join(f"- **{k}**: {v}" for k, v in CONVENTIONS.items()))
    commit("threshold", "convention")


def _score_control(method: str, bundle: Bundle | None) -> None:
    """The score box: every score the method takes that the bundle serves; disabled, with
    the reason, for a method that scores itself (``offer.score_note``)."""
    s = store()
    scores = offer.scores_for(bundle, method)
    note = offer.score_note(bundle, method)
    if not scores:  # the method's own score, shown, not chosen
        st.selectbox("Score", [get_method(method).own_score], disabled=True,
                     format_func=lambda k: SCORE_LABELS.get(k, k), help=plain(note))
    else:
        if st.session_state.get("score", s.score) not in scores:
            st.session_state["score"] = scores[0]
        bind("score")
        st.selectbox("Score", scores, key="score", format_func=lambda k: SCORE_LABELS.get(k, k),
                     help="\n".join(f"- **{k}**: {SCORE_HELP.get(k, k)}" for k in scores))
        commit("score")
    if note:
        st.caption(plain(note))
