"""Which engine serves a setting, and the result it gives, labelled truthfully.

The one seam between the dashboard and ash_core's engines: ``exact`` is
``Evaluator.evaluate`` (the CLI's numbers bit for bit); ``cube`` is a lookup in the score
cube (every p of an ASH method at once; equal to the CLI up to float32 rounding). The
policy (exact where one exact evaluation is cheap, the cube where not) is meant to move
into ash_core; this module then only forwards to it.

A cube failure is never hidden: the exact numbers are shown instead, labelled as exact,
with the reason in ``Replay.note``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import streamlit as st

from ash_core import Bundle, EvalResult
from ash_core.metrics import OODMetrics
from ash_core.stats import max_abs_difference
from dashboard import cache

try:  # the score-cube engine (ash_core.engine today)
    from ash_core import engine as _engine
except ImportError:  # pragma: no cover - an ash_core without it: exact only
    _engine = None

Progress = Callable[[int, int], None]

OVERRIDES = ("auto", "exact", "cube")
#: the slider's grid; a cube holds every one of these p for one method and threshold mode
CUBE_GRID = tuple(float(p) for p in range(100))
#: cubes larger than this (rows x grid x 16 bytes) are not built (memory stays bounded)
CUBE_MAX_BYTES = int(os.environ.get("ASH_CUBE_MAX_MB", "512")) * 2**20
#: one exact evaluation over at most this many feature values (rows x D, without id_fit)
#: takes well under a second: "auto" uses the exact engine (the demo bundles: 4-11 M)
EXACT_MAX_VALUES = 16 * 2**20

LABELS = {
    "exact": "exact, as `ash-explore evaluate`",
    "cube": "score cube (float32; equal to `ash-explore evaluate` up to rounding)",
}


@dataclass(frozen=True)
class Replay:
    """A setting's result, the engine that really computed it and why another was not used."""

    result: EvalResult
    engine: str  # "exact" or "cube"
    note: str = ""

    @property
    def label(self) -> str:
        return LABELS[self.engine]


def _scored_rows(bundle: Bundle) -> int:
    return sum(len(s) for s in bundle.splits if s.role != "id_fit")


def cube_applies(bundle: Bundle, method: str, p: float | None) -> bool:
    """Whether the cube can serve this setting (ASH methods, integer p, bounded size)."""
    if _engine is None or os.environ.get("ASH_NO_CUBE") or p is None:
        return False
    if not _engine.is_cube_method(method) or float(p) not in CUBE_GRID:
        return False
    return _scored_rows(bundle) * len(CUBE_GRID) * 16 <= CUBE_MAX_BYTES


def choose(bundle: Bundle, method: str, p: float | None, override: str = "auto") -> str:
    """The engine for this setting: the override when it applies, else exact for cheap
    evaluations and the cube for expensive ones."""
    if not cube_applies(bundle, method, p):
        return "exact"
    if override in ("exact", "cube"):
        return override
    return "exact" if _scored_rows(bundle) * bundle.dim <= EXACT_MAX_VALUES else "cube"


@st.cache_resource(show_spinner=False)
def _cubes() -> cache.LRU:
    return cache.LRU(4)


def cube_for(bundle: Bundle, method: str, threshold: str, progress: Progress | None = None):
    """The score cube of one method and threshold mode over ``CUBE_GRID`` (built once per
    bundle, with ``progress(done, total)`` while it is built; shared and read-only)."""
    key = (*cache.bundle_key(bundle), method, threshold)
    cube = _cubes().get(key)
    if cube is None:
        cube = _engine.get_cube(cache.base_evaluator(bundle), method, CUBE_GRID, threshold,
                                progress=progress)
        _cubes().put(key, cube)
    return cube


@st.cache_resource(max_entries=64, show_spinner=False)
def _cube_result(path: str, chash: str, ood: tuple[str, ...], method: str, p: float,
                 threshold: str, score: str, convention: str, _bundle: Bundle) -> EvalResult:
    cube = cube_for(_bundle, method, threshold)
    d = _engine.point_metrics(cube, p, score, convention, list(ood))
    return EvalResult(
        bundle=d["bundle"] or _bundle.name, method=method, p=d["p"], threshold=threshold,
        score=score, convention=convention, id_accuracy=d["id_accuracy"],
        ood={n: OODMetrics(**m, convention=convention) for n, m in d["ood"].items()},
        fitted_threshold=d["fitted_threshold"],
        id_scores=np.asarray(cube.scores(cube.id_name, p, score)),
        ood_scores={n: np.asarray(cube.scores(n, p, score)) for n in ood},
    )


def replay(bundle: Bundle, ood: Sequence[str], method: str, p: float | None, threshold: str,
           score: str, convention: str, override: str = "auto",
           progress: Progress | None = None) -> Replay:
    """One setting's result from the engine ``choose`` picks (cached; read only)."""
    p, threshold = cache.normalized(method, p, threshold)
    if choose(bundle, method, p, override) == "exact":
        note = "" if override != "cube" or p is None else \
            f"the score cube does not serve {method} at p={p:g}; exact numbers shown"
        return Replay(cache.exact(bundle, ood, method, p, threshold, score, convention),
                      "exact", note)
    try:
        cube_for(bundle, method, threshold, progress)
        result = _cube_result(*cache.bundle_key(bundle), tuple(ood), method, float(p),
                              threshold, score, convention, bundle)
        return Replay(result, "cube")
    except Exception as exc:  # noqa: BLE001 - shown in the page, never hidden
        note = f"the score cube failed ({cache.error_text(exc)}); exact numbers shown instead"
    return Replay(cache.exact(bundle, ood, method, p, threshold, score, convention),
                  "exact", note)


def verify(bundle: Bundle, ood: Sequence[str], shown: Replay) -> tuple[float, int]:
    """(max |shown - exact|, numbers compared) over the metrics and accuracies shown."""
    r = shown.result
    truth = cache.exact(bundle, ood, r.method, r.p, r.threshold, r.score, r.convention)
    return max_abs_difference(r.to_dict(), truth.to_dict())
