"""Validated parameters in the page: the marks, the "validated parameters" toggle, the
overview's result at the validated p, the parameters of compared methods, and the
sentence exports carry.

The choice itself is ``ash_core.search.grid`` (id_val vs the pooled ood_val splits, OpenOOD's
first-best rule, the declared search grid); this module only caches it per bundle, OOD
selection and setting, and shows it; compared methods take their parameters by the
Leaderboard's rule (``ash_core.reports.leaderboard.choose_params``). No maths here.
"""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from ash_core import EvalResult, get_method
from ash_core.errors import AshError
from ash_core.methods.recommended import benchmark_family, recommended_params
from ash_core.reports.leaderboard import Choice, choose_params, validation_or_reason
from ash_core.search.grid import ParamMarks, param_marks, validation_statement
from ash_core.setting import Setting
from dashboard import cache, layer_replay
from dashboard import replay as engines
from dashboard.param_marks import marks_caption
from dashboard.views.common import Context, bind, commit, plain

TOGGLE_HELP = ("show the overview at the p chosen on the bundle's validation splits (id_val "
               "vs ood_val, OpenOOD's rule over the method's search grid) instead of the "
               "slider's p")


@st.cache_resource(max_entries=32, show_spinner="Choosing p on the validation splits...")
def _marks(path: str, chash: str, ood: tuple[str, ...], method: str, threshold: str,
           score: str, convention: str, _ctx_bundle) -> ParamMarks:
    setting = Setting(method, {}, threshold, score, convention)
    return param_marks(cache.get_evaluator(_ctx_bundle, ood), setting)


def marks(ctx: Context) -> ParamMarks | None:
    """The current method's marks (None for a method without p); a search that fails
    leaves only the paper's mark, with the reason in ``missing``."""
    s = ctx.state
    if not get_method(s.method).has_p or not ctx.ood:
        return None
    p, threshold = cache.normalized(s.method, s.p, s.threshold)
    try:
        return _marks(*cache.bundle_key(ctx.bundle), tuple(ctx.ood), s.method, threshold,
                      s.score, s.convention, ctx.bundle)
    except AshError as exc:
        family = benchmark_family(ctx.bundle)
        return ParamMarks(None, None, recommended_params(s.method, family), family,
                          missing=cache.error_text(exc))


def render_toggle(ctx: Context) -> None:
    """Under the slider: the marks in words and the "validated parameters" toggle."""
    m = marks(ctx)
    text = marks_caption(m)
    if text:
        st.caption(plain(text))
    if m is not None:
        _toggle(ctx, disabled=m.validated is None)


def view_toggle(ctx: Context) -> None:
    """The toggle in a view that compares methods; shown there only when the slider's
    (methods with p) is not."""
    if marks(ctx) is None:
        _toggle(ctx)


def _toggle(ctx: Context, disabled: bool = False) -> None:
    bind("val", bool(ctx.state.val))
    st.toggle("validated parameters", key="val", disabled=disabled, help=TOGGLE_HELP)
    commit("val")
    ctx.state.val = int(bool(ctx.state.val))


@st.cache_resource(max_entries=64, show_spinner="Choosing parameters on the validation splits...")
def _choice(path: str, chash: str, ood: tuple[str, ...], method: str, threshold: str,
            score: str, convention: str, validated: bool, _ctx_bundle) -> Choice:
    ev = cache.get_evaluator(_ctx_bundle, ood)
    splits = validation_or_reason(ev.bundle)[0] if validated else None
    return choose_params(ev, method, splits, threshold_mode=threshold, score=score,
                         convention=convention)


def choices(ctx: Context, methods: list[str]) -> tuple[list[Choice], str | None]:
    """Each method's setting as the Leaderboard picks it (defaults; with the toggle on,
    validated where the method has a search grid), except that the sidebar's method,
    when not validated, is at the slider's p; and why nothing was validated (or None)."""
    s = ctx.state
    note = validation_or_reason(ctx.bundle)[1] if s.val else None
    out = []
    for m in methods:
        c = _choice(*cache.bundle_key(ctx.bundle), tuple(ctx.ood), m, s.threshold, s.score,
                    s.convention, bool(s.val) and note is None, ctx.bundle)
        if m == s.method and get_method(m).has_p and not c.validated:
            c = Choice(c.setting.with_params(p=s.p_value), "the slider's p", "slider")
        out.append(c)
    return out, note


def replayable(setting: Setting) -> Setting:
    """``setting`` as the engines (``dashboard.replay``) evaluate it: its p, if any, and
    every other parameter at its default."""
    p = setting.params.get("p")
    return replace(setting, params={} if p is None else {"p": p}).validated()


def overview_result(ctx: Context) -> tuple[EvalResult, str, str | None]:
    """(result, setting label, note) the overview shows: at the validated p when the
    toggle is on and the bundle has validation splits, else the slider's."""
    s = ctx.state
    m = marks(ctx) if s.val else None
    if m is None or m.validated is None:
        note = "no validated p for this bundle: showing the slider's p" if s.val else None
        return ctx.result(), ctx.setting, note
    p = m.validated["p"]
    result = engines.replay(ctx.bundle, ctx.ood, s.method, p, s.threshold, s.score,
                            s.convention, s.engine, None, layer_replay.active(s)).result
    return result, s.setting_label(p=p), validation_statement(m.result)


def export_rows(ctx: Context) -> dict[str, str]:
    """The report's settings rows: which parameters were validated, and on what."""
    m = marks(ctx)
    if m is None:
        return {}
    if m.result is None:
        return {"validated parameters": "none: " + (m.missing or "no validation splits")}
    return {"validated parameters": validation_statement(m.result)}
