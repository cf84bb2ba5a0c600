"""Shared view plumbing: the session's State store, widget binding, the URL, the current
result, error boxes and the one helper that shows untrusted text as plain text."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from ash_core import Bundle, EvalResult, get_method
from ash_core.search.grid import ParamMarks
from dashboard import cache, layer_replay, replay, validation
from dashboard.builds import Build
from dashboard.config import AppArgs
from dashboard.paths import BundlePolicy
from dashboard.result import Replay
from dashboard.state import State, default_p

STORE = "_ash_state"
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#!|<>~$])")


def plain(text: object) -> str:
    """``text`` escaped for Streamlit markdown, so it shows literally: no links, images,
    HTML, colour or icon directives. Every bundle- or URL-supplied string that reaches a
    markdown element (captions, headers, boxes, labels) goes through this."""
    return _MARKDOWN.sub(r"\\\1", str(text)).replace("\n", " ")


def store() -> State:
    return st.session_state[STORE]


def bind(key: str, value=None) -> None:
    """Give widget ``key`` its value from the store (widgets that were not rendered in the
    previous run lose their session value; the store keeps it)."""
    if key not in st.session_state:
        st.session_state[key] = getattr(store(), key) if value is None else value


def commit(*keys: str) -> None:
    """Copy widget values back into the store."""
    s = store()
    for key in keys:
        if key in st.session_state:
            v = st.session_state[key]
            setattr(s, key, tuple(v) if key == "ood" else v)


def start_at_default_p(method_key: str, p_key: str) -> None:
    """``on_change`` of a method box: the newly chosen method starts at its own declared
    default p (``method``/``p`` in the sidebar, ``bmethod``/``bp`` in Compare)."""
    s = store()
    commit(method_key)
    value = default_p(getattr(s, method_key))
    setattr(s, p_key, value)
    st.session_state[p_key] = value


def write_url() -> None:
    """Mirror the store in the URL so that a copied link reopens this exact view."""
    target = store().to_query()
    if dict(st.query_params.to_dict()) != target:
        st.query_params.from_dict(target)


@contextmanager
def progress_bar(text: str) -> Iterator[cache.Progress]:
    """A ``progress(done, total)`` callback that draws a bar on first use; removed after."""
    slot = st.empty()

    def progress(done: int, total: int) -> None:
        slot.progress(min(1.0, done / max(total, 1)), text=f"{text} ... {done}/{total}")

    try:
        yield progress
    finally:
        slot.empty()


#: How often a page whose cube is being prepared polls the build.
POLL_EVERY_S = 1.0


@st.fragment(run_every=POLL_EVERY_S)
def preparing(build: Build) -> None:
    """The background build's progress bar; when the build ends, the whole page reruns
    (now from the cube, or saying why the cube failed). Polls; never blocks the page."""
    if build.done:
        st.rerun()
    st.progress(build.fraction, text=f"Preparing the score cube for the slider in the "
                                     f"background ({build.describe()}). Meanwhile the "
                                     "numbers are exact, computed at this p.")


#: How often a page looks for a value made in the background (``await_value``), and for
#: how long at most
AWAIT_EVERY_S = 0.1
AWAIT_AT_MOST_S = 120.0


def await_value(get: Callable[[], Any], slot, text: str) -> Any:
    """``get()`` once it is not None (a value made in the background, e.g. intervals),
    saying ``text`` with the time waited in ``slot`` meanwhile; None after
    ``AWAIT_AT_MOST_S``. Each redraw lets Streamlit stop this run for a newer one (a
    parameter moved again), so the wait never holds a move back."""
    start = time.monotonic()
    while (value := get()) is None:
        waited = time.monotonic() - start
        if waited > AWAIT_AT_MOST_S:
            slot.caption(f"{text}: not ready after {waited:.0f} s; rerun to look again.")
            return None
        slot.caption(f"{text} ... {waited:.1f} s")
        time.sleep(AWAIT_EVERY_S)
    return value


@dataclass
class Context:
    """What every view needs: the state, the bundle and the OOD selection."""

    state: State
    args: AppArgs
    bundles: list[str]
    policy: BundlePolicy
    bundle: Bundle | None = None
    ood: list[str] = field(default_factory=list)
    colors: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    _replay: tuple[tuple, Replay] | None = None

    @property
    def setting(self) -> str:
        return self.state.setting_label()

    @property
    def theme(self) -> str | None:
        """The browser's theme ("light" or "dark"), so figures draw in its colours; None
        where Streamlit cannot tell (tests, bare mode): figures then use marks that read on
        both backgrounds."""
        try:
            kind = st.context.theme.type
        except Exception:  # noqa: BLE001 - no browser context
            return None
        return kind if kind in ("light", "dark") else None

    @property
    def layer(self) -> str:
        """The layer the numbers are at (``layer_replay.active``)."""
        return layer_replay.active(self.state)

    def replay(self) -> Replay:
        """The current setting's result and the engine that computed it.

        Memoised for this run only: a fragment rerun (p moved) calls the views with the
        same Context, so the memo is keyed by the setting, never reused for another p."""
        s = self.state
        setting, layer = s.setting(), self.layer
        key = (setting, s.engine, tuple(self.ood), layer)
        if self._replay is None or self._replay[0] != key:
            with progress_bar("Computing the numbers (every p at once for the slider's "
                              "cube; split by split for a score on features)") as progress:
                rep = replay.replay(self.bundle, self.ood, setting, s.engine, layer, progress)
            if rep.preparing is not None:
                preparing(rep.preparing)
            self._replay = (key, rep)
        return self._replay[1]

    def result(self) -> EvalResult:
        """The current setting's result (cached, shared between sessions: read only)."""
        return self.replay().result

    def baseline(self) -> EvalResult:
        """No shaping, same score and convention: what deltas are measured against."""
        return replay.baseline(self.bundle, self.ood, self.state.setting(), self.layer)

    def marks(self) -> ParamMarks | None:
        """The current method's validated, test-optimal and paper's p (None: no p)."""
        return validation.marks(self.bundle, self.ood, self.state.setting())


def board_note(ctx: Context) -> None:
    """Say so where a view of every method scores with ``State.board_score``, not the
    sidebar's score on features."""
    s = ctx.state
    if s.board_score != s.score and get_method(s.method).own_score is None:
        st.caption(plain(f"This view compares every method and scores with {s.board_score}: "
                         f"score {s.score} is fitted on the shaped features at every point "
                         "(minutes for a grid); the other views show it at the slider's "
                         "setting."))


def guarded(fn: Callable[[Context], None], ctx: Context) -> None:
    """Run a view; a bad input becomes a clear error box and the rest keeps working."""
    try:
        fn(ctx)
    except Exception as exc:  # noqa: BLE001 - show every failure in the page
        st.error(f"Cannot show this view: {plain(cache.error_text(exc))}",
                 icon=":material/warning:")


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def pp(v: float | None) -> str | None:
    """A delta in percentage points."""
    return None if v is None else f"{100 * v:+.2f} pp"


METRICS = (("fpr95", "FPR95"), ("auroc", "AUROC"), ("aupr_in", "AUPR-In"),
           ("aupr_out", "AUPR-Out"))


def metrics_table(frame, key: str, deltas: bool = False) -> None:
    """The per-OOD-set metrics table in %, optionally with deltas in percentage points;
    with each metric's interval (``{metric}_ci``, text) and the sample counts (``n_id``,
    ``n_ood``) where the frame has them."""
    ci = "n_ood" in frame.columns
    cols = ["ood_set", *[c for m, _ in METRICS for c in (
        (m, *((f"{m}_ci",) if ci else ()), *((f"{m}_delta",) if deltas else ())))],
        *(("n_id", "n_ood") if ci else ())]
    st.dataframe(
        cache.percent(frame), hide_index=True, key=key, width="stretch",
        column_order=cols,
        column_config={
            "ood_set": "OOD set",
            **{m: st.column_config.NumberColumn(f"{label} (%)", format="%.2f")
               for m, label in METRICS},
            **{f"{m}_ci": st.column_config.TextColumn(f"{label} 95% CI (%)")
               for m, label in METRICS},
            **{f"{m}_delta": st.column_config.NumberColumn(f"Δ {label} (pp)", format="%+.2f")
               for m, label in METRICS},
            "n_id": st.column_config.NumberColumn("n ID"),
            "n_ood": st.column_config.NumberColumn("n OOD"),
        },
    )
