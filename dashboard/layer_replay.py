"""The layer control's numbers: Overview, Distributions and Curves at an inner layer.

When a bundle has layer maps (``ash-explore extract --layers``, ``make layers``), the sidebar
offers a layer; at an inner layer a setting's numbers are ``ash_core.layers.layer_result``:
shaping after that block, replayed through the network's tail. With the energy score, any p
of the slider is a lookup in the layer's cube (``ash_core.layers.cube``: the sweep at every
integer p, built once per bundle, variant and layer in the background, at most one build
per cube, and cached on disk beside the bundle; ``make layers`` prebuilds ResNet-20's ASH-S
cubes, which are then read from disk); until it is ready, p on the layer grid
(0..95 step 5) is a lookup in the layer's sweep (shared with the "Where to ASH" view) and
other p are replayed exactly (seconds; cached), shown with the build's progress. Other
scores are replayed exactly. Lookups equal the exact replay bit for bit.
Only the per-sample ASH variants have a meaning there (``ash_core.layers.refusal`` says why
the rest do not). No maths here: this module picks, caches and labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st

from ash_core import Bundle, EvalResult, get_method
from ash_core.features import get_feature_score
from ash_core.layers import (
    PENULTIMATE,
    LayerEvaluator,
    LayerSweep,
    layer_result,
    layer_sweep,
    open_layers,
    refusal,
)
from ash_core.layers.cube import layer_cube
from ash_core.layers.sweep import LAYER_GRID
from ash_core.maths.stats import row_zero_counts
from ash_core.setting import Setting
from dashboard import cache
from dashboard.builds import Build, Builds
from dashboard.result import LayerReplay

GRID = tuple(float(p) for p in LAYER_GRID)
#: layer cubes kept in memory (each [100, rows] float32 plus ID predictions: small)
CUBES_KEPT = 8
#: views whose numbers follow the layer control; the others show the penultimate layer
FOLLOWS = ("overview", "distributions", "curves")


def options(bundle: Bundle) -> list[str]:
    """The layers a bundle offers, in network order, then ``penultimate`` ([] without maps)."""
    maps = open_layers(bundle)
    return [n for n in maps.names if n == PENULTIMATE or maps.info(n).tail] if maps else []


def fit(bundle: Bundle, layer: str) -> tuple[str, list[str]]:
    """(the layer to use, notes): an unknown layer (a link's, or the previous bundle's)
    falls back to ``penultimate`` with a note saying what this bundle has."""
    names = options(bundle)
    if layer == PENULTIMATE or layer in names:
        return layer, []
    have = f"choose one of: {', '.join(names)}" if names else \
        "this bundle has no layer maps; see `make layers`"
    shown = layer if len(layer) <= 40 else layer[:37] + "..."
    return PENULTIMATE, [f"ignored layer={shown!r} ({have})"]


def why_not(state) -> str | None:
    """Why the state's setting has no meaning at an inner layer (None: it has): a method
    that is not a per-sample ASH variant, or a score fitted on penultimate features."""
    why = refusal(state.method, state.threshold)
    if why is None and get_method(state.method).own_score is None and \
            get_feature_score(state.score) is not None:
        why = (f"score {state.score} is fitted on penultimate id_fit features; inner layers "
               "use a score on logits")
    return why


def active(state) -> str:
    """The layer the numbers are at: the state's, unless its setting has no meaning there
    (``why_not``) or its view does not follow the layer control (``FOLLOWS``)."""
    layer = getattr(state, "layer", PENULTIMATE)
    if layer == PENULTIMATE or state.view not in FOLLOWS or why_not(state):
        return PENULTIMATE
    return layer


def _after(bundle: Bundle | None, layer: str) -> str:
    """Where shaping happens at ``layer``, in words."""
    maps = open_layers(bundle) if bundle is not None else None
    info = maps.layers.get(layer) if maps is not None else None
    if info is not None and info.tokens:
        tokens, channels = info.shape
        return (f"the output of transformer block {layer} (per sample over its {tokens} "
                f"tokens x {channels} channels)")
    return f"the last block of {layer}"


def caption(state, bundle: Bundle | None = None) -> str | None:
    """What the layer control does to this view, in words (None at the penultimate layer)."""
    layer = getattr(state, "layer", PENULTIMATE)
    if layer == PENULTIMATE:
        return None
    why = why_not(state)
    if why:
        return f"Layer {layer} is not used: {why}. Numbers are at the penultimate layer."
    if state.view == "where":
        return "Layer control: this view shows every layer side by side."
    if state.view not in FOLLOWS:
        return (f"Layer {layer} applies to Overview, Distributions and Curves only; this view "
                "shows the penultimate layer.")
    text = (f"Layer {layer}: {state.method} after {_after(bundle, layer)}, replayed through "
            "the rest of the network (`ash-explore evaluate --layer`).")
    if state.view == "overview" and getattr(state, "val", 0):
        text += (" The validated p is chosen at the penultimate layer (on the validation "
                 "splits) and shown here at this layer.")
    return text


@st.cache_resource(max_entries=8, show_spinner=False)
def _evaluator(path: str, chash: str, layer: str) -> LayerEvaluator:
    return LayerEvaluator(cache.load(path), layer, cache.nonempty_ood(cache.load(path))[0],
                          device="auto")


@st.cache_resource(show_spinner=False)
def _sweeps() -> cache.LRU:
    return cache.LRU(8)


def sweep_for(bundle: Bundle, method: str, layer: str | None,
              progress: cache.Progress | None = None) -> LayerSweep:
    """The sweep of ``method`` over the grid at ``layer`` (None: every layer, for the "Where
    to ASH" view), once per bundle, variant and layer; the disk cache is per layer, shared."""
    key = (*cache.bundle_key(bundle), method, layer)
    sweep = _sweeps().get(key)
    if sweep is None:
        sweep = layer_sweep(bundle, None if layer is None else [layer], method, GRID,
                            progress=progress or (lambda done, total: None))
        _sweeps().put(key, sweep)
    return sweep


@st.cache_resource(max_entries=64, show_spinner="Replaying through the network's tail...")
def _result(path: str, chash: str, layer: str, ood: tuple[str, ...], key: str,
            _setting: Setting, _sweep: LayerSweep | None) -> EvalResult:
    ev = _evaluator(path, chash, layer).with_ood(list(ood))
    return layer_result(ev, _setting, sweep=_sweep)


def _on_grid(p: float | None) -> bool:
    return p is not None and any(abs(p - g) < 1e-9 for g in GRID)


@st.cache_resource(show_spinner=False)
def _cubes() -> Builds:
    return Builds(CUBES_KEPT)


def cube_build(bundle: Bundle, method: str, layer: str) -> tuple[LayerSweep | None,
                                                                  Build | None]:
    """(the layer's cube when it is ready, else None; its background build, else None),
    starting the build when none runs: at most one per (bundle, method, layer)."""
    key = (*cache.bundle_key(bundle), method, layer)
    path = str(bundle.root)

    def make(progress: cache.Progress) -> LayerSweep:
        return layer_cube(cache.load(path), method, layer, progress=progress)

    job = _cubes().start(key, make, unit="tail passes over batches")
    return (_cubes().ready.get(key), None) if job is None else (None, job)


def replay(bundle: Bundle, layer: str, ood: Sequence[str], setting: Setting,
           progress: cache.Progress | None = None) -> LayerReplay:
    """A validated setting's numbers shaped at ``layer`` (cached; read only): with the
    energy score a lookup in the layer's cube when it is ready, else in the layer's sweep
    (p on its grid) or an exact replay, with the cube's build in ``preparing``."""
    key = (*cache.bundle_key(bundle), layer, tuple(ood), cache.setting_key(setting))
    energy = setting.score == "energy"
    cube = _cubes().ready.get((*cache.bundle_key(bundle), setting.method, layer)) \
        if energy else None
    if cube is not None:
        return LayerReplay(_result(*key, setting, cube), layer=layer, looked_up=True)
    lookup = energy and _on_grid(setting.p)
    sweep = sweep_for(bundle, setting.method, layer, progress) if lookup else None
    result = _result(*key, setting, sweep)  # the first numbers get the cores first
    if not energy:
        return LayerReplay(result, layer=layer, looked_up=False)
    cube, job = cube_build(bundle, setting.method, layer)
    if cube is not None:
        return LayerReplay(_result(*key, setting, cube), layer=layer, looked_up=True)
    note = ""
    if job is not None and job.done:  # a finished build is ready: this one failed
        note = (f"the layer's cube failed ({cache.error_text(_cubes().take_failure(job))}); "
                "p off the grid is replayed exactly")
        job = None
    return LayerReplay(result, note=note, preparing=job, layer=layer, looked_up=lookup)


def baseline(bundle: Bundle, layer: str, ood: Sequence[str], setting: Setting) -> EvalResult:
    """No shaping, replayed from ``layer``, with the setting's score and convention: what
    the deltas at that layer are measured against (from the sweep of the setting's method
    at that layer, or its cube, when it is in memory, else exactly)."""
    unshaped = Setting("none", {}, "local", setting.score, setting.convention).validated()
    key = (*cache.bundle_key(bundle), setting.method, layer)
    sweep = (_cubes().ready.get(key) or _sweeps().get(key)) if setting.score == "energy" \
        else None
    return _result(*cache.bundle_key(bundle), layer, tuple(ood), cache.setting_key(unshaped),
                   unshaped, sweep)


@st.cache_data(max_entries=8, show_spinner=False)
def _zero_counts(path: str, chash: str, layer: str) -> np.ndarray:
    bundle = cache.load(path)
    return row_zero_counts(open_layers(bundle).maps(layer, bundle.id_split.name))


def p_counts(bundle: Bundle, layer: str) -> tuple[int, np.ndarray]:
    """(units per sample D, exact zeros per ID row) at an inner ``layer``."""
    return int(np.prod(open_layers(bundle).info(layer).shape)), \
        _zero_counts(*cache.bundle_key(bundle), layer)
