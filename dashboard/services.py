"""Cached data access for the dashboard: bundles, evaluators, results, sweeps, images.

Caches are keyed by small values only (a bundle path, its manifest stamp or
content hash, setting strings and numbers); tensors are never hashed. Cached
objects (bundles, ``Evaluator`` instances, ``EvalResult`` objects) are shared by
every session and treated as read-only: nothing here or in the views mutates them.
Every cache has ``max_entries`` so memory does not grow with each rerun.

All numbers come from ``ash_core``; this module only wires calls and caches them.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import streamlit as st
import torch

from ash_core import Bundle, EvalResult, Evaluator, get_method, list_methods, load_bundle
from ash_core import curves as ac
from ash_core import samples as ai
from ash_core.errors import AshError, BundleError
from ash_core.metrics import OODMetrics
from ash_core.report import evaluation_frame
from ash_core.sweep import sweep

if TYPE_CHECKING:
    from dashboard.state import State

try:  # the score-cube engine: every p of an ASH method at once (optional fast path)
    from ash_core import cube as _engine
except ImportError:  # pragma: no cover - older ash_core
    _engine = None

# The server runs one session per thread and the per-rerun tensors are small: intra-op
# threads only add contention (10x slower on a busy 2-core machine). `ash-explore
# dashboard` sets ASH_TORCH_THREADS=1; importing this module elsewhere changes nothing.
def torch_threads_from_env(env: dict | None = None) -> int | None:
    """``ASH_TORCH_THREADS`` as a thread count (>= 1), None when unset; a value that is not
    an integer is ignored with a warning (it must not stop the dashboard from starting)."""
    text = ((os.environ if env is None else env).get("ASH_TORCH_THREADS") or "").strip()
    if not text:
        return None
    try:
        return max(1, int(text))
    except ValueError:
        warnings.warn(f"ignoring ASH_TORCH_THREADS={text!r}: not an integer", stacklevel=2)
        return None


if (_threads := torch_threads_from_env()) is not None:
    torch.set_num_threads(_threads)

REPO = Path(__file__).resolve().parents[1]
DEMO_BUNDLE = "cached_features/cifar10_resnet20"
ENV_BUNDLES = "ASH_DASHBOARD_BUNDLES"
ENV_DATA_ROOT = "ASH_DATA_ROOT"


# --------------------------------------------------------------------------- arguments


@dataclass(frozen=True)
class AppArgs:
    bundles: tuple[str, ...]
    data_root: str | None


def parse_app_args(argv: Sequence[str] | None = None, env: dict | None = None) -> AppArgs:
    """Bundles and data root from ``streamlit run app.py -- BUNDLE ... --data-root DIR``.

    Environment variables ``ASH_DASHBOARD_BUNDLES`` (os.pathsep-separated) and
    ``ASH_DATA_ROOT`` are used when no argument is given. ``argv`` is only read
    when the script itself is the program (so pytest's argv is never parsed).
    """
    env = os.environ if env is None else env
    if argv is None:
        argv = sys.argv[1:] if sys.argv and sys.argv[0].endswith("app.py") else []
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("bundles", nargs="*")
    parser.add_argument("--data-root", default=None)
    args, _ = parser.parse_known_args(list(argv))
    bundles = list(args.bundles)
    if not bundles and env.get(ENV_BUNDLES):
        bundles = [b for b in env[ENV_BUNDLES].split(os.pathsep) if b]
    data_root = args.data_root or env.get(ENV_DATA_ROOT) or None
    if data_root is None and (REPO.parent / "shared" / "data").is_dir():
        data_root = str(REPO.parent / "shared" / "data")
    return AppArgs(tuple(bundles), data_root)


def resolve_path(path: str) -> str:
    """A bundle path as typed, resolved against the cwd and then the repository."""
    p = Path(path).expanduser()
    if not p.is_absolute() and not p.exists() and (REPO / p).exists():
        p = REPO / p
    return str(p)


def discover_bundles(extra: Sequence[str] = ()) -> list[str]:
    """Bundle directories: the given ones first, then those under cached_features/."""
    found: list[str] = list(dict.fromkeys(extra))
    for root in dict.fromkeys([Path.cwd() / "cached_features", REPO / "cached_features"]):
        if root.is_dir():
            for d in sorted(root.iterdir()):
                if (d / "manifest.json").is_file():
                    rel = os.path.relpath(d, Path.cwd()) if d.is_relative_to(Path.cwd()) \
                        else str(d)
                    if rel not in found and str(d) not in found:
                        found.append(rel)
    if not found:
        found.append(DEMO_BUNDLE)
    return found


# --------------------------------------------------------------------------- bundles


def _stamp(path: str) -> str:
    m = Path(path) / "manifest.json"
    try:
        st_ = m.stat()
    except OSError:
        return "missing"
    return f"{st_.st_mtime_ns}-{st_.st_size}"


@st.cache_resource(max_entries=8, show_spinner="Loading bundle...")
def _load_bundle(path: str, stamp: str) -> Bundle:
    return load_bundle(path, verify=True)


def get_bundle(path: str) -> Bundle:
    """The bundle at ``path`` (cached by path and manifest stamp); raises AshError."""
    if not path:
        raise BundleError("no bundle selected; pick one in the sidebar.")
    full = resolve_path(path)
    return _load_bundle(full, _stamp(full))


def bundle_key(bundle: Bundle) -> tuple[str, str]:
    return str(bundle.root), bundle.content_hash


def nonempty_ood(bundle: Bundle) -> tuple[list[str], list[str]]:
    """(OOD splits with samples, OOD splits without any)."""
    ok = [s.name for s in bundle.ood_splits if len(s) > 0]
    empty = [s.name for s in bundle.ood_splits if len(s) == 0]
    return ok, empty


@st.cache_resource(max_entries=8, show_spinner="Loading features...")
def _base_evaluator(path: str, content_hash: str) -> Evaluator:
    bundle = _load_bundle(path, _stamp(path))
    return Evaluator(bundle, nonempty_ood(bundle)[0], warn=False)


@st.cache_resource(max_entries=32, show_spinner=False)
def _evaluator(path: str, content_hash: str, ood: tuple[str, ...]) -> Evaluator:
    # shares the bundle's read-only features, base logits, rank orders and fitted
    # thresholds between OOD selections (all keyed by split name / parameters)
    return _base_evaluator(path, content_hash).with_ood(list(ood))


def get_evaluator(bundle: Bundle, ood: Sequence[str]) -> Evaluator:
    path, chash = bundle_key(bundle)
    return _evaluator(path, chash, tuple(ood))


#: the slider's grid; a cube holds every one of these p for one method and threshold mode
CUBE_GRID = tuple(float(p) for p in range(100))
#: cubes larger than this (rows x grid x 16 bytes) are not built: large bundles use the
#: Evaluator per p instead, so memory stays bounded
CUBE_MAX_BYTES = int(os.environ.get("ASH_CUBE_MAX_MB", "512")) * 2**20


def engine_for(bundle: Bundle, method: str, p: float | None, engine: str) -> str:
    """The engine that will really serve this setting ("exact" unless the cube applies)."""
    return "cube" if engine == "cube" and cube_enabled(bundle, method, p) else "exact"


def engine_label(bundle: Bundle, state: State) -> str:
    """How the shown numbers were computed, for captions."""
    if engine_for(bundle, state.method, state.p_value, state.engine) == "cube":
        return "score cube (float32; equal to `ash-explore evaluate` up to rounding)"
    return "exact, as `ash-explore evaluate`"


def cube_enabled(bundle: Bundle, method: str, p: float | None) -> bool:
    """Whether a slider move for this setting is a cube lookup (ASH methods, integer p)."""
    if _engine is None or os.environ.get("ASH_NO_CUBE") or p is None:
        return False
    if not _engine.is_cube_method(method) or float(p) not in CUBE_GRID:
        return False
    rows = sum(len(s) for s in bundle.splits if s.role != "id_fit")
    return rows * len(CUBE_GRID) * 16 <= CUBE_MAX_BYTES


@st.cache_resource(max_entries=4, show_spinner="Preparing the slider: scoring every p at once...")
def _cube(path: str, content_hash: str, method: str, threshold: str):
    return _engine.get_cube(_base_evaluator(path, content_hash), method, CUBE_GRID, threshold)


def _cube_result(path: str, chash: str, ood: tuple[str, ...], method: str, p: float,
                 threshold: str, score: str, convention: str) -> EvalResult:
    """An ``EvalResult`` from the score cube: the same scores and metrics as
    ``Evaluator.evaluate`` (to float rounding), in milliseconds instead of a shaping pass."""
    cube = _cube(path, chash, method, threshold)
    d = _engine.point_metrics(cube, p, score, convention, list(ood))
    return EvalResult(
        bundle=d["bundle"] or _load_bundle(path, _stamp(path)).name,
        method=method, p=d["p"], threshold=threshold, score=score, convention=convention,
        id_accuracy=d["id_accuracy"],
        ood={n: OODMetrics(**m, convention=convention) for n, m in d["ood"].items()},
        fitted_threshold=d["fitted_threshold"],
        id_scores=np.asarray(cube.scores(cube.id_name, p, score)),
        ood_scores={n: np.asarray(cube.scores(n, p, score)) for n in ood},
    )


@st.cache_resource(max_entries=64, show_spinner="Shaping and scoring...")
def _evaluate(path: str, content_hash: str, ood: tuple[str, ...], method: str,
              p: float | None, threshold: str, score: str, convention: str,
              engine: str = "exact") -> EvalResult:
    ev = _evaluator(path, content_hash, ood)
    if engine == "cube" and cube_enabled(ev.bundle, method, p):
        try:
            return _cube_result(path, content_hash, ood, method, float(p), threshold, score,
                                convention)
        except Exception as exc:  # noqa: BLE001 - any cube problem: the exact path below
            warnings.warn(f"score cube unavailable ({exc}); evaluating exactly", stacklevel=2)
    return ev.evaluate(method, p, threshold, score, convention)


def evaluate(bundle: Bundle, ood: Sequence[str], method: str, p: float | None,
             threshold: str, score: str, convention: str, engine: str = "exact") -> EvalResult:
    """One setting's ``EvalResult``, cached (shared between sessions: read only).

    ``engine="exact"`` is ``Evaluator.evaluate`` (the CLI's numbers bit for bit);
    ``"cube"`` serves ASH methods from the score cube (equal up to float32 rounding)
    and falls back to the exact path for everything else.
    """
    path, chash = bundle_key(bundle)
    if not get_method(method).has_p:
        p = None
    if threshold not in get_method(method).thresholds:
        threshold = get_method(method).thresholds[0]
    engine = engine_for(bundle, method, p, engine)
    return _evaluate(path, chash, tuple(ood), method, p, threshold, score, convention, engine)


def baseline(bundle: Bundle, ood: Sequence[str], score: str, convention: str) -> EvalResult:
    """No shaping, same score and convention: what every delta is measured against."""
    return evaluate(bundle, ood, "none", None, "local", score, convention)


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


# --------------------------------------------------------------------------- plot data


@st.cache_data(max_entries=32, show_spinner=False)
def _distribution_data(path: str, chash: str, ood: tuple[str, ...], method: str,
                       p: float | None, threshold: str, score: str, convention: str,
                       bins: int, engine: str):
    shaped = _evaluate(path, chash, ood, method, p, threshold, score, convention, engine)
    base = _evaluate(path, chash, ood, "none", None, "local", score, convention, "exact")
    id_name = _load_bundle(path, _stamp(path)).id_split.name
    hb = ac.density_histograms({id_name: base.id_scores, **base.ood_scores}, bins)
    ha = ac.density_histograms({id_name: shaped.id_scores, **shaped.ood_scores}, bins)
    return hb, ha, ac.tpr_threshold(base.id_scores), ac.tpr_threshold(shaped.id_scores)


def distribution_data(bundle: Bundle, ood: Sequence[str], method: str, p: float | None,
                      threshold: str, score: str, convention: str, bins: int = 80,
                      engine: str = "exact"
                      ) -> tuple[ac.Histogram, ac.Histogram, float, float]:
    """Density histograms of ID and every OOD set on shared edges, no shaping and shaped,
    and the two TPR-95 thresholds: (hist_before, hist_after, thr_before, thr_after)."""
    spec = get_method(method)
    p = p if spec.has_p else None
    threshold = threshold if threshold in spec.thresholds else spec.thresholds[0]
    path, chash = bundle_key(bundle)
    return _distribution_data(path, chash, tuple(ood), method, p, threshold, score,
                              convention, bins, engine_for(bundle, method, p, engine))


@st.cache_data(max_entries=64, show_spinner=False)
def _curves(path: str, chash: str, ood: tuple[str, ...], method: str, p: float | None,
            threshold: str, score: str, convention: str, max_points: int,
            engine: str) -> dict[str, tuple[ac.Curve, ac.Curve]]:
    r = _evaluate(path, chash, ood, method, p, threshold, score, convention, engine)
    return {n: ac.roc_pr_curves(r.id_scores, r.ood_scores[n], convention, max_points)
            for n in ood}


def curve_data(result: EvalResult, base: EvalResult, bundle: Bundle, ood: Sequence[str],
               kind: str = "roc", max_points: int = ac.MAX_CURVE_POINTS,
               engine: str = "exact") -> dict[str, tuple[ac.Curve, ac.Curve]]:
    """Per OOD set: (unshaped curve, shaped curve), thinned; positive class = convention.

    Cached per result, so the unshaped curves are computed once, not on every p move.
    """
    path, chash = bundle_key(bundle)
    key = (path, chash, tuple(ood))
    shaped = _curves(*key, result.method, result.p, result.threshold, result.score,
                     result.convention, max_points,
                     engine_for(bundle, result.method, result.p, engine))
    unshaped = _curves(*key, "none", None, "local", base.score, base.convention, max_points,
                       "exact")
    i = 0 if kind == "roc" else 1
    return {n: (unshaped[n][i], shaped[n][i]) for n in ood}


# --------------------------------------------------------------------------- sweeps


def grid_for(step: int) -> tuple[float, ...]:
    return tuple(float(p) for p in range(0, 100, int(step)))


class _LRU:
    """A small thread-safe LRU map shared by all sessions (values are read-only)."""

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


@st.cache_resource(show_spinner=False)
def _sweep_cache() -> _LRU:
    return _LRU(16)


def sweep_frame(bundle: Bundle, ood: Sequence[str], grid: Sequence[float], threshold: str,
                score: str, convention: str, methods: Sequence[str] | None = None,
                progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """``ash_core.sweep.sweep`` over every registered method, cached by small keys.

    Computed outside Streamlit's function caches so that ``progress`` (which draws a
    progress bar) can run; the result is shared between sessions: treat it as read-only.
    """
    path, chash = bundle_key(bundle)
    methods = tuple(methods or list_methods())
    key = (path, chash, tuple(ood), methods, tuple(grid), threshold, score, convention)
    cache = _sweep_cache()
    df = cache.get(key)
    if df is None:
        ev = _evaluator(path, chash, tuple(ood))
        df = sweep(ev.bundle, list(methods), list(grid), threshold, score, convention,
                   list(ood), evaluator=ev, progress=progress)
        cache.put(key, df)
    return df


def pareto(df: pd.DataFrame, y: str) -> pd.DataFrame:
    maximize = not y.endswith("fpr95")
    return ac.pareto_front(df, "id_acc", y, maximize_x=True, maximize_y=maximize)


# --------------------------------------------------------------------------- inspector


def split_names(bundle: Bundle, ood: Sequence[str]) -> list[str]:
    return [bundle.id_split.name, *ood]


def inspect(bundle: Bundle, ood: Sequence[str], method: str, p: float | None, threshold: str,
            split: str, index: int, engine: str = "exact") -> ai.SampleInspection:
    """The inspector's data for one sample (energies placed within the ID energies)."""
    ev = get_evaluator(bundle, ood)
    n = len(bundle.split(split))
    if not 0 <= index < n:
        raise BundleError(f"index {index} is out of range for {split!r} (0..{n - 1}).")
    shaped = evaluate(bundle, ood, method, p, threshold, "energy", "id", engine)
    base = baseline(bundle, ood, "energy", "id")
    spec = get_method(method)
    shaper = ev.shaper(method, p if spec.has_p else None,
                       threshold if threshold in spec.thresholds else spec.thresholds[0])
    feats = ev.features(split)
    return ai.inspect_sample(feats[index : index + 1], shaper, ev.weight, ev.bias,
                             bundle.classes, base.id_scores, shaped.id_scores,
                             shaped=ai.shape_sample(shaper, feats, index))


def worst(result: EvalResult, bundle: Bundle, kind: str, n: int = 10) -> pd.DataFrame:
    return ai.worst_samples(result.id_scores, result.ood_scores, bundle.id_split.name, kind, n)


@dataclass(frozen=True)
class SampleImage:
    kind: str  # "thumbnail", "file" or "missing"
    image: np.ndarray | None = None
    path: str | None = None
    message: str = ""
    source: str = ""


def sample_image(bundle: Bundle, split: str, index: int, data_root: str | None) -> SampleImage:
    """The sample's picture: its bundled thumbnail, its file under the data root, or why not."""
    s = bundle.split(split)
    try:
        thumbs = s.thumbnails
    except AshError as exc:
        return SampleImage("missing", message=f"thumbnails unreadable: {exc}")
    if thumbs is not None and 0 <= index < thumbs.shape[0]:
        return SampleImage("thumbnail", image=np.asarray(thumbs[index]))
    source = ""
    try:
        meta = s.meta
        if "source" in meta.columns and index < len(meta):
            source = str(meta["source"].iloc[index] or "")
    except Exception as exc:  # a broken sidecar must not break the inspector
        return SampleImage("missing", message=f"sidecar unreadable: {exc}")
    if not source:
        return SampleImage("missing", message="no thumbnail and no image path in this bundle")
    if not data_root:
        return SampleImage("missing", source=source,
                           message=f"image {source} not shown: no data root given "
                                   "(start with --data-root DIR)")
    root = Path(data_root)
    if not root.is_dir():
        return SampleImage("missing", source=source,
                           message=f"data root {data_root} does not exist; image {source} "
                                   "cannot be shown")
    full = (root / source).resolve()
    if not full.is_relative_to(root.resolve()) or not full.is_file():
        return SampleImage("missing", source=source,
                           message=f"image {source} not found under the data root {data_root}")
    return SampleImage("file", path=str(full), source=source)


def provenance(bundle: Bundle) -> dict:
    """The manifest without per-file hashes: model, layer, data, splits (for reports)."""
    m = {k: v for k, v in bundle.manifest.items() if k != "files"}
    m["splits"] = [{k: s.get(k) for k in ("name", "role", "n")} for s in m.get("splits", [])]
    m["content_hash"] = bundle.content_hash
    m["path"] = str(bundle.root)
    return m


def error_text(exc: BaseException) -> str:
    """A user-readable message for an error (AshError messages are already readable)."""
    if isinstance(exc, AshError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
