"""The setting's parameters other than p, as number inputs generated from the registry's
declarations (``dashboard.controls``), under the p slider in the same fragment: a move
reruns only this part of the page. A method that reads a stored feature variant (ODIN)
shows the settings it was extracted with, which no control can change."""

from __future__ import annotations

import streamlit as st

from ash_core import get_method
from dashboard import controls
from dashboard.views.common import Context, plain

#: number inputs per row
PER_ROW = 4


def render(ctx: Context) -> None:
    """One number input per declared parameter but p; each value goes to ``State.params``
    (only values away from their default, so links stay short)."""
    s = ctx.state
    extra = controls.extra_controls(s.method, s.score)
    if extra:
        cols = st.columns(min(len(extra), PER_ROW))
        for i, c in enumerate(extra):
            value = s.params.get(c.name, c.default)
            if c.key not in st.session_state:
                st.session_state[c.key] = c.widget_value(value)
            low, high = c.widget_bounds(st.session_state[c.key])
            with cols[i % len(cols)]:
                st.number_input(c.label, min_value=low, max_value=high,
                                step=c.widget_value(c.step), format=c.format, key=c.key,
                                help=plain(c.help))
            chosen = float(st.session_state[c.key])
            if chosen == c.default:
                s.params.pop(c.name, None)
            else:
                s.params[c.name] = chosen
    _variant_caption(ctx)


def _variant_caption(ctx: Context) -> None:
    spec = get_method(ctx.state.method)
    if spec.variant is None or ctx.bundle is None:
        return
    fixed = ctx.bundle.variant(spec.variant) or {}
    values = ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                       for k, v in fixed.items())
    st.caption(plain(f"{spec.name}'s settings are fixed at extraction ({values or 'none'}), "
                     f"not controls: {spec.variant_hint}."))
