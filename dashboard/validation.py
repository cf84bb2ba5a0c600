"""Validated parameters, as data for the page: a setting's marks (validated, test-optimal
and paper's p), the parameters of compared methods, and the sentence exports carry.

The choice itself is ``ash_core.search.grid`` (id_val vs the pooled ood_val splits, OpenOOD's
first-best rule, the declared search grid); this module only caches it per bundle, OOD
selection and setting; compared methods take their parameters by the Leaderboard's rule
(``ash_core.reports.leaderboard.choose_params``). The toggle that shows them is
``views/validated.py``. No maths and no widgets here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import streamlit as st

from ash_core import Bundle, get_method
from ash_core.errors import AshError
from ash_core.features import list_feature_scores
from ash_core.methods.recommended import benchmark_family, recommended_params
from ash_core.reports.leaderboard import Choice, choose_params, validation_or_reason
from ash_core.search.grid import ParamMarks, param_marks, validation_statement
from ash_core.setting import Setting
from dashboard import cache


@st.cache_resource(max_entries=32, show_spinner="Choosing p on the validation splits...")
def _marks(path: str, chash: str, ood: tuple[str, ...], key: str, _setting: Setting,
           _bundle: Bundle) -> ParamMarks:
    return param_marks(cache.get_evaluator(_bundle, ood), _setting)


def marks(bundle: Bundle, ood: Sequence[str], setting: Setting) -> ParamMarks | None:
    """The marks of the setting's method over its search grid (None for a method without
    p, or no OOD set); a search that fails leaves only the paper's mark, with the reason
    in ``missing``."""
    if not get_method(setting.method).has_p or not ood or setting.score in list_feature_scores():
        return None  # a score on features refits at every grid p: no marks for it here
    search = replace(setting, params={})  # the search spans p: one entry for every p
    try:
        return _marks(*cache.bundle_key(bundle), tuple(ood), cache.setting_key(search), search,
                      bundle)
    except AshError as exc:
        family = benchmark_family(bundle)
        return ParamMarks(None, None, recommended_params(setting.method, family), family,
                          missing=cache.error_text(exc))


@st.cache_resource(max_entries=64, show_spinner="Choosing parameters on the validation splits...")
def _choice(path: str, chash: str, ood: tuple[str, ...], method: str, threshold: str,
            score: str, convention: str, validated: bool, _bundle: Bundle) -> Choice:
    ev = cache.get_evaluator(_bundle, ood)
    splits = validation_or_reason(ev.bundle)[0] if validated else None
    return choose_params(ev, method, splits, threshold_mode=threshold, score=score,
                         convention=convention)


def choices(bundle: Bundle, ood: Sequence[str], methods: Sequence[str], slider: Setting,
            validated: bool) -> tuple[list[Choice], str | None]:
    """Each method's setting as the Leaderboard picks it (defaults; ``validated``: chosen
    on the validation splits where the method has a search grid), with the slider's
    threshold mode, score and convention, except that the slider's method, when not
    validated, is at the slider's p; and why nothing was validated (or None)."""
    note = validation_or_reason(bundle)[1] if validated else None
    out = []
    for m in methods:
        c = _choice(*cache.bundle_key(bundle), tuple(ood), m, slider.threshold_mode, slider.score,
                    slider.convention, validated and note is None, bundle)
        if m == slider.method and slider.p is not None and not c.validated:
            c = Choice(c.setting.with_params(p=slider.p), "the slider's p", "slider")
        out.append(c)
    return out, note


def export_rows(marks: ParamMarks | None) -> dict[str, str]:
    """The report's settings rows: which parameters were validated, and on what."""
    if marks is None:
        return {}
    if marks.result is None:
        return {"validated parameters": "none: " + (marks.missing or "no validation splits")}
    return {"validated parameters": validation_statement(marks.result)}
