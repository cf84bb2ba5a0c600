"""The operating point's URL value: ``kept:95`` (keep 95% of the ID images) or
``score:-3.25`` (a threshold on the score axis). No Streamlit here."""

from __future__ import annotations

import math

#: how an operating point is chosen -> its label in the page
OP_MODES: dict[str, str] = {"kept": "share of ID kept (%)", "score": "score threshold"}
DEFAULT_OP = "kept:95"


def parse_op(text: str) -> tuple[str, float] | None:
    """(mode, value) of a valid ``MODE:VALUE``, else None: ``kept`` in (0, 100], ``score``
    any finite number."""
    mode, sep, value = str(text).partition(":")
    if not sep or mode not in OP_MODES:
        return None
    try:
        v = float(value)
    except ValueError:
        return None
    if not math.isfinite(v) or (mode == "kept" and not 0.0 < v <= 100.0):
        return None
    return mode, v


def format_op(mode: str, value: float) -> str:
    """``MODE:VALUE`` with the value written as short as it reads back exactly."""
    return f"{mode}:{float(value):g}" if float(f"{float(value):g}") == float(value) \
        else f"{mode}:{float(value)!r}"


def read_op(text: str, notes: list[str]) -> str:
    """``text`` when it is a valid operating point, else the default and a note."""
    if parse_op(text) is not None:
        return text
    notes.append(f"ignored op={text[:40]!r} (kept:PERCENT in (0, 100], e.g. kept:95, or "
                 "score:THRESHOLD, e.g. score:-3.2)")
    return DEFAULT_OP
