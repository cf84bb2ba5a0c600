"""Cached loading and exact evaluation: bundles, evaluators, results, per-bundle counts.

Caches are keyed by small values only (a resolved bundle path, its manifest stamp or
content hash, setting strings and numbers); tensors are never hashed. Cached objects
(bundles, ``Evaluator`` instances, ``EvalResult`` objects, arrays) are shared by every
session and treated as read-only: nothing here or in the views mutates them. Every
cache has a bounded size, so memory does not grow with each rerun.

All numbers come from ``ash_core``; this module only wires calls and caches them.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from ash_core import Bundle, EvalResult, Evaluator, load_bundle
from ash_core.engine.exact import unshaped_score
from ash_core.errors import AshError, BundleError
from ash_core.features import get_feature_score
from ash_core.maths.stats import row_zero_counts
from ash_core.reports.tables import evaluation_frame
from ash_core.setting import Setting
from dashboard.paths import BundlePolicy

#: ``progress(done, total)``: how the dashboard's long computations report (a bar draws it)
Progress = Callable[[int, int], None]


class LRU:
    """A small thread-safe LRU map shared by all sessions (values are read-only).

    For values built outside Streamlit's function caches (so that a progress callback,
    which draws on the page, can run while they are computed)."""

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        return None

    def put(self, key, value) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def make_room(self) -> None:
        """Drop least recently used entries until one more fits (before making a value
        that will be ``put``: the old one is not held while the new one is made)."""
        with self._lock:
            while self._data and len(self._data) >= self.size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


# --------------------------------------------------------------------------- bundles


def _stamp(path: str) -> str:
    try:
        st_ = (Path(path) / "manifest.json").stat()
    except OSError:
        return "missing"
    return f"{st_.st_mtime_ns}-{st_.st_size}"


@st.cache_resource(max_entries=8, show_spinner="Loading bundle...")
def _load_bundle(path: str, stamp: str) -> Bundle:
    return load_bundle(path, verify=True)


def load(real_path: str) -> Bundle:
    """The bundle at an already allowed, resolved path (cached by path and manifest stamp)."""
    return _load_bundle(real_path, _stamp(real_path))


def get_bundle(path: str, policy: BundlePolicy) -> Bundle:
    """The bundle a link or the sidebar names, if the path policy allows it; raises AshError."""
    if not path:
        raise BundleError("no bundle selected; pick one in the sidebar.")
    return load(policy.resolve(path))


def bundle_key(bundle: Bundle) -> tuple[str, str]:
    return str(bundle.root), bundle.content_hash


def nonempty_ood(bundle: Bundle) -> tuple[list[str], list[str]]:
    """(OOD splits with samples, OOD splits without any)."""
    ok = [s.name for s in bundle.ood_splits if len(s) > 0]
    empty = [s.name for s in bundle.ood_splits if len(s) == 0]
    return ok, empty


@st.cache_data(max_entries=8, show_spinner=False)
def _zero_counts(path: str, content_hash: str) -> np.ndarray:
    # from the float32 copy the pages read anyway: the file's map is read once, not twice
    ev = _base_evaluator(path, content_hash)
    return row_zero_counts(ev.features(ev.id_name).numpy())


def id_zero_counts(bundle: Bundle) -> np.ndarray:
    """Exact zeros per row of the ID split (computed once per bundle)."""
    return _zero_counts(*bundle_key(bundle))


# --------------------------------------------------------------------------- evaluation


@st.cache_resource(max_entries=8, show_spinner="Loading features...")
def _base_evaluator(path: str, content_hash: str) -> Evaluator:
    bundle = load(path)
    return Evaluator(bundle, nonempty_ood(bundle)[0], warn=False)


def base_evaluator(bundle: Bundle) -> Evaluator:
    """An Evaluator over every non-empty OOD split (shared, read-only caches)."""
    return _base_evaluator(*bundle_key(bundle))


def warm_features(bundle: Bundle, extra: Sequence[str] = ()) -> Evaluator:
    """The shared evaluator with the fp32 features of ID, every OOD split and ``extra``
    decoded before they are used: threads that use them next (a page's exact pass, a
    background cube build) then share one copy instead of decoding a split twice. The
    splits are decoded side by side where torch leaves cores idle (``map_splits``)."""
    ev = base_evaluator(bundle)
    ev.map_splits(ev.features, [*ev.split_names, *extra])
    return ev


@st.cache_resource(show_spinner=False)
def _unshaped_started() -> set:
    return set()


def prefetch_unshaped(bundle: Bundle, score: str) -> None:
    """Start the unshaped scores and predictions of every split under ``score`` (one dense
    pass, kept in the shared evaluator: ``Evaluator.unshaped``) in a background thread,
    once per bundle and score, so that a large bundle's first exact evaluation shapes on
    one core while the other scores the unshaped logits (the baseline's numbers and the
    unshaped accuracy). A score on features prefetches energy, for the accuracy.
    Features are decoded first, here."""
    ev, key = warm_features(bundle), (*bundle_key(bundle), score)
    with _PREFETCH_LOCK:
        if key in _unshaped_started():
            return
        _unshaped_started().add(key)
    on_logits = unshaped_score(score)
    threading.Thread(target=lambda: [ev.unshaped(n, on_logits) for n in ev.split_names],
                     daemon=True, name="ash-unshaped-scores").start()


_PREFETCH_LOCK = threading.Lock()


@st.cache_resource(max_entries=32, show_spinner=False)
def _evaluator(path: str, content_hash: str, ood: tuple[str, ...]) -> Evaluator:
    # shares the bundle's read-only features, base logits, rank orders and fitted
    # thresholds between OOD selections (all keyed by split name / parameters)
    return _base_evaluator(path, content_hash).with_ood(list(ood))


def get_evaluator(bundle: Bundle, ood: Sequence[str]) -> Evaluator:
    return _evaluator(*bundle_key(bundle), tuple(ood))


def setting_key(setting: Setting) -> str:
    """A setting as a small cache key: its JSON form (``Setting.to_dict``), keys sorted."""
    return json.dumps(setting.to_dict(), sort_keys=True)


@st.cache_resource(max_entries=64, show_spinner="Shaping and scoring...")
def _exact(path: str, content_hash: str, ood: tuple[str, ...], key: str,
           _setting: Setting) -> EvalResult:
    return _evaluator(path, content_hash, ood).evaluate(_setting)


@st.cache_resource(show_spinner=False)
def _fitted_results() -> LRU:
    return LRU(16)


def exact(bundle: Bundle, ood: Sequence[str], setting: Setting,
          progress: Progress | None = None) -> EvalResult:
    """``Evaluator.evaluate``: the CLI's numbers bit for bit (cached by the setting's key;
    read only). Give a validated setting, so that one setting is one cache entry.

    A score on features (refitted on the shaped id_fit, then applied split by split: the
    slow path) is kept outside Streamlit's function cache, so that ``progress(done,
    splits)`` can draw its bar while it runs."""
    if get_feature_score(setting.score) is None:
        return _exact(*bundle_key(bundle), tuple(ood), setting_key(setting), setting)
    key = (*bundle_key(bundle), tuple(ood), setting_key(setting))
    found = _fitted_results().get(key)
    if found is None:
        found = _evaluator(*bundle_key(bundle), tuple(ood)).evaluate(setting, progress)
        _fitted_results().put(key, found)
    return found


@st.cache_data(max_entries=16, show_spinner="Scoring the ID split by energy...")
def _id_energies(path: str, content_hash: str, method: str, p: float | None,
                 threshold: str) -> np.ndarray:
    ev = _base_evaluator(path, content_hash)
    setting = Setting(method, {} if p is None else {"p": p}, threshold)
    return ev.energies(ev.shaper(setting), ev.id_name)


def id_energies(bundle: Bundle, method: str, p: float | None, threshold: str) -> np.ndarray:
    """Energies of the ID split with ``method`` applied at ``p`` (None for a method without
    one) and ``threshold``, whatever its own score (``Evaluator.energies``; computed once
    per setting, not per inspector rerun)."""
    return _id_energies(*bundle_key(bundle), method, p, threshold)


def baseline(bundle: Bundle, ood: Sequence[str], score: str, convention: str) -> EvalResult:
    """No shaping, same score and convention: what every delta is measured against."""
    return exact(bundle, ood, Setting("none", {}, "local", score, convention).validated())


# --------------------------------------------------------------------------- tables


def metrics_frame(result: EvalResult, base: EvalResult | None = None) -> pd.DataFrame:
    """The CLI's table (one row per OOD set plus Average), with deltas against ``base``."""
    return evaluation_frame(result.to_dict(), None if base is None else base.to_dict())


def percent(df: pd.DataFrame, keep: Sequence[str] = ("p",)) -> pd.DataFrame:
    """A copy with fraction columns (floats) scaled to percent, for display."""
    out = df.copy()
    for col in out.columns:
        if col not in keep and out[col].dtype.kind == "f":
            out[col] = 100 * out[col]
    return out


#: a provenance with more class names lists the first ones and the count
PROVENANCE_CLASSES = 20


def provenance(bundle: Bundle) -> dict:
    """The manifest without per-file hashes: model, layer, data, splits (for reports), and
    the bundle's name and content hash, never where the server keeps it."""
    m = {k: v for k, v in bundle.manifest.items() if k != "files"}
    m["splits"] = [{k: s.get(k) for k in ("name", "role", "n")} for s in m.get("splits", [])]
    classes = list(m.get("classes") or [])
    if len(classes) > PROVENANCE_CLASSES:  # 200 class names would fill pages of the report
        m["classes"] = (f"{len(classes)} classes: {', '.join(map(str, classes[:10]))}, ... "
                        f"{classes[-1]}")
    m["bundle"] = bundle.name
    m["content_hash"] = bundle.content_hash
    return m


def error_text(exc: BaseException) -> str:
    """A user-readable message for an error (AshError messages are already readable)."""
    if isinstance(exc, AshError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
