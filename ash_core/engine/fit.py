"""Fits on id_fit: a shaper's cutoff (and state), and the state of a score on features.

``fitted_shaper`` fits what a method needs on id_fit (a global threshold, ReAct's clip,
DICE's masked head) once per ``FeatureStore`` and parameters (``FeatureStore.once``).

A score on features (``ash_core.features``: KNN, Mahalanobis, ViM ...) composes with any
shaping method: id_fit and every query split are shaped by the setting's method (and
scored through its head, e.g. DICE's masked one), the score is fitted on shaped id_fit,
then applied to each shaped split. The fitted state (class means, precisions, principal
subspaces, neighbour banks) is a dict of numpy arrays, kept once per store and on disk
as one safetensors file (never pickled):

    <cache dir>/<bundle content hash>/fitted-<score>-<slot digest>.safetensors

The directory, slot, checks and writes are the disk cache's (``ash_core.diskcache``). The
key holds the bundle's content hash, a digest of the head and id_fit as read, the shaping
setting (method, its parameters, threshold mode, seed), the score and its parameters. A
stale, corrupt or unreadable entry is rebuilt with a warning; an unusable cache directory
means no cache, with a warning.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ash_core.bundle import Bundle
from ash_core.diskcache import (
    cache_dir_of,
    cached,
    data_digest,
    entry_path,
    read_arrays,
    write_arrays,
)
from ash_core.engine.store import FeatureStore
from ash_core.errors import CubeCacheError, ParameterError
from ash_core.features import FitData, get_feature_score
from ash_core.features import base as features_base
from ash_core.features.base import FeatureScore, State
from ash_core.maths.draws import SCHEME as DRAW_SCHEME
from ash_core.methods import Shaper
from ash_core.setting import Setting, split_params

#: bumped whenever a fit's content or the file layout changes (old entries become stale)
FITTED_VERSION = 1
KEY_FIELD = "ash_fitted"
#: ``scorer(split name) -> (shaped logits, scores as numpy)``
SplitScorer = Callable[[str], tuple[torch.Tensor, np.ndarray]]


def fitted_key(store: FeatureStore, shaper: Shaper, score: str,
               score_params: Mapping[str, float]) -> dict[str, Any]:
    """Everything a fitted state depends on (compared exactly when loading)."""
    fit = store.bundle.id_fit
    return {
        "version": FITTED_VERSION,
        "bundle": store.bundle.content_hash,
        "data": data_digest(store.bundle, [fit.name]),
        "id_fit": fit.name,
        "method": shaper.name,
        # a score as a method of its own shapes nothing: its parameters are the score's
        "method_params": {} if shaper.spec.feature_score is not None else dict(shaper.params),
        "threshold": shaper.threshold_mode,
        "seed": shaper.seed if shaper.spec.stochastic else 0,
        **({"draws": DRAW_SCHEME} if shaper.spec.stochastic else {}),
        "score": score,
        "score_params": dict(score_params),
    }


def fitted_path(cache_dir: Path, key: Mapping[str, Any]) -> Path:
    """``<cache_dir>/<bundle hash>/fitted-<score>-<slot digest>.safetensors``."""
    return entry_path(cache_dir, key, f"fitted-{key['score']}", ".safetensors")


def save_state(path: Path, key: Mapping[str, Any], state: State) -> Path:
    """Write ``state`` with its key and a sha256 over header and data (atomic)."""
    return write_arrays(path, state, KEY_FIELD, key)


def load_state(path: Path, key: Mapping[str, Any]) -> State:
    """The cached state at ``path``; CubeCacheError when stale or corrupt."""
    return read_arrays(path, KEY_FIELD, key)


def _fit_data(store: FeatureStore, shaper: Shaper, spec: FeatureScore,
              in_use: Collection[str]) -> FitData:
    fit = store.bundle.id_fit
    if fit is None:
        raise ParameterError(
            f"score {spec.name!r} is fitted on ID training features and bundle "
            f"{store.bundle.name} has no 'id_fit' split; choose a score on logits (energy, "
            "msp, maxlogit) or re-extract with an id_fit split."
        )
    labels = fit.labels_tensor()
    weight, bias = shaper.head(store.weight, store.bias)
    slot = _slot(fitted_key(store, shaper, spec.name, {}))
    return FitData(store.shaped_features(shaper, fit.name, in_use),
                   None if labels is None else labels.numpy(), weight, bias,
                   lambda name, make: store.once(("shared", slot, name), make))


def fitted_state(store: FeatureStore, shaper: Shaper, spec: FeatureScore,
                 score_params: Mapping[str, float], in_use: Collection[str] = (),
                 use_cache: bool = True) -> State:
    """The state of ``spec`` fitted on id_fit shaped by ``shaper`` (made once per store,
    read from the disk cache, or fitted)."""
    if store.bundle.id_fit is None:
        _fit_data(store, shaper, spec, in_use)  # raises the missing-id_fit error
    key = fitted_key(store, shaper, spec.name, spec.fit_key(score_params))
    slot = _slot(key)

    def fit() -> State:
        return spec.fit(_fit_data(store, shaper, spec, in_use), score_params)

    def read(path: Path) -> State:
        state = load_state(path, key)
        _probe(store, shaper, spec, state, score_params)
        return state

    def fit_or_read() -> State:
        cdir = cache_dir_of(store.bundle, None, use_cache, "fitted states")
        return cached(None if cdir is None else fitted_path(cdir, key), read, fit,
                      lambda path, state: save_state(path, key, state),
                      f"fitted {spec.name} state")

    return store.once(("state", slot), fit_or_read)


def _slot(key: Mapping[str, Any]) -> str:
    """A fitted key as one in-memory key (the data digest left out: one store, one data)."""
    return json.dumps({k: v for k, v in key.items() if k != "data"}, sort_keys=True)


def _probe(store: FeatureStore, shaper: Shaper, spec: FeatureScore, state: State,
           score_params: Mapping[str, float]) -> None:
    """CubeCacheError unless a cached ``state`` scores two id_fit rows to two numbers.

    The checksum finds corruption, not a forged entry with a recomputed checksum: arrays
    of shapes the score cannot use are caught here (the entry is then refitted), before
    any split is scored. (Whoever can write a bundle's caches can change its numbers, as
    whoever can write the bundle can: docs/bundle-format.md.)"""
    fit = store.bundle.id_fit
    x = torch.from_numpy(np.array(fit.features[:2], dtype=np.float32))
    weight, bias = shaper.head(store.weight, store.bias)
    try:
        out = spec.score(x, x @ weight.T.to(x.device) + bias.to(x.device), (weight, bias),
                         state, score_params)
        fits = tuple(out.shape) == (len(x),)
    except (RuntimeError, ValueError, IndexError, TypeError, KeyError) as exc:
        raise CubeCacheError(f"its state does not fit these features ({exc})") from None
    if not fits:
        raise CubeCacheError(f"its state scores {len(x)} rows to shape {tuple(out.shape)}")


def feature_scorer(store: FeatureStore, shaper: Shaper, setting: Setting,
                   in_use: Collection[str]) -> SplitScorer | None:
    """``split -> (top-1 predictions, scores)`` for a setting whose score is on features,
    else None (the score is on logits); ``in_use``: the splits the caller scores."""
    spec = get_feature_score(setting.score)
    if spec is None:
        return None
    score_params = split_params(setting.method, setting.score, setting.params)[1]
    state = fitted_state(store, shaper, spec, score_params, in_use)
    head = shaper.head(store.weight, store.bias)
    table = spec.table
    rank = None if table is None else table.key(score_params, state)
    slot = _slot(fitted_key(store, shaper, spec.name, spec.fit_key(score_params)))

    def one(name: str) -> tuple[torch.Tensor, np.ndarray]:
        x = store.shaped_features(shaper, name, in_use)
        logits = store.shaped_logits(shaper, name, in_use) if shaper.spec.keeps_features \
            else store.logits(x, head)
        if rank is None or table.nbytes(x.shape[0], state, rank) > features_base.TABLE_MAX_BYTES:
            scores = spec.score(x, logits, head, state, score_params)
        else:  # the table ``rank`` serves every value it holds (ScoreTable)
            kept = store.table((slot, name, rank),
                               lambda: table.make(x, logits, head, state, rank))
            scores = table.read(kept, score_params)
        return logits.argmax(dim=1).cpu(), scores.to(torch.float64).numpy()

    return one


# --------------------------------------------------------------------------- shapers


def fitted_shaper(store: FeatureStore, setting: Setting) -> Shaper:
    """A validated shaper for ``setting``, fitted on id_fit when its method and threshold
    mode need it (once per store: a fit depends on the parameters, not on the
    selection), with the settings of the feature variant it reads bound from the bundle."""
    shaper = setting.shaper()
    if shaper.needs_fit:
        on = setting.method if shaper.spec.fit == "always" else "global"
        key = ("cutoff", on, tuple(sorted(shaper.params.items())))
        shaper.cutoff, shaper.fitted_state = store.once(
            key, lambda: _fit(store, shaper))
    if shaper.spec.variant is not None:
        shaper.variant_settings = _variant_settings(store.bundle, shaper)
    return shaper


def _fit(store: FeatureStore, shaper: Shaper) -> tuple[float | None, Any]:
    """(cutoff, state) of ``shaper`` fitted on the bundle's id_fit split."""
    fit_split = store.bundle.id_fit
    if fit_split is None:
        way_out = ("use threshold='local' or" if shaper.spec.fit == "global"
                   else "choose a method that is not fitted, or")
        raise ParameterError(
            f"{shaper.describe()} needs an 'id_fit' split (ID training features) "
            f"and bundle {store.bundle.name} has none; {way_out} re-extract with "
            "an id_fit split."
        )
    shaper.fit(store.features(fit_split.name), head=(store.weight, store.bias))
    return shaper.cutoff, shaper.fitted_state


def _variant_settings(bundle: Bundle, shaper: Shaper) -> dict[str, Any]:
    """The settings the bundle's variant was extracted with (ParameterError if the
    bundle has no such variant)."""
    settings = bundle.variant(shaper.spec.variant)
    if settings is None:
        raise ParameterError(f"{shaper.describe()} is not available on bundle "
                             f"{bundle.name}: {shaper.spec.unavailable(bundle)}.")
    return settings
