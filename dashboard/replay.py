"""One setting's numbers for a page: the one entry from the views down to the engines.

A view hands a ``Setting`` (``State.setting()``), the page's engine choice and the layer the
numbers are at (``layer_replay.active``); this module validates the setting once (one
canonical form, so one cache entry per setting) and routes it: the penultimate layer to
``dashboard.penultimate`` (exact or score cube), an inner layer to
``dashboard.layer_replay``. Both answer with ``dashboard.result.Replay``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ash_core import Bundle, EvalResult
from ash_core.layers import PENULTIMATE
from ash_core.maths.stats import max_abs_difference
from ash_core.setting import Setting
from dashboard import cache, layer_replay, penultimate
from dashboard.result import Replay


def replay(bundle: Bundle, ood: Sequence[str], setting: Setting, engine: str = "auto",
           layer: str = PENULTIMATE, progress: cache.Progress | None = None) -> Replay:
    """The setting's result at ``layer`` (cached, shared between sessions: read only)."""
    setting = setting.validated()
    if layer != PENULTIMATE:
        return layer_replay.replay(bundle, layer, ood, setting, progress)
    return penultimate.replay(bundle, ood, setting, engine, progress)


def baseline(bundle: Bundle, ood: Sequence[str], setting: Setting,
             layer: str = PENULTIMATE) -> EvalResult:
    """No shaping, with the setting's score and convention, at ``layer``: what the deltas
    of ``replay`` are measured against."""
    if layer != PENULTIMATE:
        return layer_replay.baseline(bundle, layer, ood, setting)
    return cache.baseline(bundle, ood, setting.score, setting.convention)


def p_counts(bundle: Bundle, layer: str = PENULTIMATE) -> tuple[int, np.ndarray]:
    """(units per sample D, exact zeros per ID row) where shaping happens: what the p
    caption's kept count k and zero share are computed from."""
    if layer != PENULTIMATE:
        return layer_replay.p_counts(bundle, layer)
    return bundle.dim, cache.id_zero_counts(bundle)


def verify(bundle: Bundle, ood: Sequence[str], setting: Setting, shown: Replay
           ) -> tuple[float, int]:
    """(max |shown - exact|, numbers compared) over the metrics and accuracies shown."""
    truth = cache.exact(bundle, ood, setting.validated())
    return max_abs_difference(shown.result.to_dict(), truth.to_dict())
