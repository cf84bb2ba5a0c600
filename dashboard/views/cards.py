"""Metric cards that stay readable from 800 px up: one width, wrapping onto more rows.

``st.columns`` squeezes every card into a fixed share of the row, which cuts labels and
values with an ellipsis on narrow windows; a horizontal container of fixed-width cards
wraps instead.
"""

from __future__ import annotations

import streamlit as st

#: a card's width in px: the longest label in use ("ID accuracy (no shaping)") fits
CARD_PX = 200


def card_row(key: str):
    """A wrapping row to call ``.metric(..., width=CARD_PX)`` on."""
    return st.container(horizontal=True, gap="small", key=key)
