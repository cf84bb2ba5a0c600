"""The engine policy: which engine serves a setting's numbers, and serving it.

Two engines compute a setting's ``EvalResult``: ``"exact"`` (``Evaluator.evaluate``: shape
the features, run the head, score) and ``"cube"`` (a lookup in a score cube holding
every grid p; equal to exact up to float32 rounding). ``"auto"`` chooses:

1. exact when the cube cannot serve the setting (a method without a cube path, a score
   on features, a p not in the grid, no OOD set selected, a fitted setting without id_fit), or when the cube
   would exceed ``ASH_CUBE_MAX_MB`` (default 512 MB), its size computed from the real
   file layout (every field's dtype x grid points x rows, plus the unshaped scores,
   labels, grid and thresholds);
2. exact when one exact evaluation is cheap: its head pass, rows x D x C multiply-adds
   over the ID and selected OOD splits, is at most ``EXACT_MAX_WORK`` (1e9, about 0.1 s
   on one core with BLAS; shaping adds a sort of the same rows, so the whole evaluation
   stays well under a second). The demo bundles (about 63k rows x 64 x 10 = 4e7) are
   evaluated exactly;
3. the cube otherwise (ImageNet scale: 85k x 2048 x 1000 = 1.7e11 per p). Methods with
   a cube: its registry declaration names a cube strategy (the ASH family, ReAct, SCALE).

``evaluate_setting`` serves a setting through the chosen engine and raises on any
failure: it never falls back silently, so a result labelled "cube" came from the cube.
No Streamlit here: the dashboard passes its own cube cache as ``cube_provider``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ash_core.bundle import Bundle
from ash_core.cube.cache import get_cube
from ash_core.cube.lookup import point_result
from ash_core.cube.model import ScoreCube, fits_on_id_fit, is_cube_method
from ash_core.cube.store import tensor_layout
from ash_core.cube.thresholds import normalize_grid
from ash_core.engine.exact import Evaluator
from ash_core.engine.result import EvalResult
from ash_core.errors import ParameterError
from ash_core.maths.scores import list_scores
from ash_core.methods import check_threshold_mode, get_method
from ash_core.setting import Setting

#: The engines that compute a setting's numbers, with what each does (the CLI's and the
#: dashboard's choices; a search's "auto" picks the cube for every method that has one).
ENGINES: dict[str, str] = {
    "auto": "automatic: exact where one evaluation is cheap (demo sizes), the score cube "
            "where not",
    "exact": "exact: one Evaluator pass per p (bit-for-bit the CLI's numbers)",
    "cube": "score cube: precomputed lookup (ASH methods; equal to the CLI up to float32 "
            "rounding)",
}
#: The slider's grid: every integer p.
SLIDER_GRID: tuple[float, ...] = tuple(float(p) for p in range(100))
#: One exact evaluation at most this many head multiply-adds is "cheap" (see module doc).
EXACT_MAX_WORK = 10**9
ENV_MAX_MB = "ASH_CUBE_MAX_MB"

CubeProvider = Callable[[str, str, int], ScoreCube]


@dataclass(frozen=True)
class EngineChoice:
    """The engine that serves a setting ("exact" or "cube") and why, in words."""

    engine: str
    reason: str


def _evaluator(source: Bundle | Evaluator, ood: Iterable[str] | None) -> Evaluator:
    if isinstance(source, Evaluator):
        return source if ood is None else source.with_ood(ood)
    return Evaluator(source, ood)


def cube_budget_bytes() -> int:
    """``ASH_CUBE_MAX_MB`` in bytes (default 512 MB)."""
    raw = os.environ.get(ENV_MAX_MB, "512").strip()
    try:
        return int(float(raw) * 2**20)
    except ValueError:
        raise ParameterError(f"{ENV_MAX_MB} must be a number of megabytes, got {raw!r}.") from None


def cube_nbytes(ev: Evaluator, method: str, threshold_mode: str, grid: Sequence[float]) -> int:
    """Bytes of the cube of ``method`` over ``grid``, from the real file layout."""
    names = ev.split_names
    layout = tensor_layout({
        "grid": list(grid), "splits": names, "threshold": threshold_mode, "method": method,
        "rows": {nm: len(ev.bundle.split(nm)) for nm in names},
        "labels": ev.bundle.id_split.labels is not None,
    })
    return sum(math.prod(shape) * dtype.itemsize for dtype, shape in layout.values())


def exact_work(ev: Evaluator) -> int:
    """Head multiply-adds of one exact evaluation: rows x D x C over the scored splits."""
    rows = sum(len(ev.bundle.split(nm)) for nm in ev.split_names)
    return rows * ev.bundle.dim * int(ev.weight.shape[0])


def _why_no_cube(ev: Evaluator, method: str, threshold_mode: str, p: float | None,
                 grid: Sequence[float], score: str = "energy") -> str | None:
    """None when the cube can serve the setting, else the reason it cannot."""
    if not is_cube_method(method):
        return f"{method} has no score cube"
    if score not in list_scores():
        return f"score {score} is fitted on the shaped features; the cube holds logit scores"
    if p is None or not any(abs(float(p) - g) <= 1e-9 for g in grid):
        return f"p={p} is not a point of the cube grid"
    if not ev.ood_names:
        return "no OOD split is selected"
    if fits_on_id_fit(method, threshold_mode) and ev.bundle.id_fit is None:
        return "it needs an id_fit split"
    size, budget = cube_nbytes(ev, method, threshold_mode, grid), cube_budget_bytes()
    if size > budget:
        return (f"its cube would take {size / 2**20:.0f} MB, over {ENV_MAX_MB}="
                f"{budget / 2**20:.0f}")
    return None


def choose_engine(source: Bundle | Evaluator, method: str, threshold_mode: str = "local",
                  requested: str = "auto", *, p: float | None = None,
                  ood: Iterable[str] | None = None,
                  grid: Sequence[float] = SLIDER_GRID,
                  score: str = "energy") -> EngineChoice:
    """The engine serving ``method`` at ``p`` with ``score`` (see the module doc for the
    rule; a score on features is always exact).

    ``requested="cube"`` where the cube cannot serve the setting is a ParameterError
    saying why; ``"exact"`` is always honoured.
    """
    if requested not in ENGINES:
        raise ParameterError(f"unknown engine {requested!r}; use one of {', '.join(ENGINES)}.")
    check_threshold_mode(get_method(method), threshold_mode)
    if requested == "exact":
        return EngineChoice("exact", "exact evaluation was asked for")
    ev = _evaluator(source, ood)
    grid = normalize_grid(grid).tolist()
    why = _why_no_cube(ev, method, threshold_mode, p, grid, score)
    if requested == "cube":
        if why:
            raise ParameterError(f"the score cube cannot serve this setting: {why}; use "
                                 "engine='exact' or 'auto'.")
        return EngineChoice("cube", "the score cube was asked for")
    if why:
        return EngineChoice("exact", f"exact evaluation: {why}")
    work = exact_work(ev)
    if work <= EXACT_MAX_WORK:
        return EngineChoice("exact", f"exact evaluation: one pass is cheap ({work:.2g} "
                                     f"multiply-adds <= {EXACT_MAX_WORK:.0e})")
    mb = cube_nbytes(ev, method, threshold_mode, grid) / 2**20
    return EngineChoice("cube", f"score cube: one exact pass costs {work:.2g} multiply-adds; "
                                f"the cube ({mb:.0f} MB) answers every grid p by lookup")


def evaluate_setting(
    source: Bundle | Evaluator,
    setting: Setting,
    *,
    engine: str = "auto",
    ood: Iterable[str] | None = None,
    grid: Sequence[float] = SLIDER_GRID,
    cube_provider: CubeProvider | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> EvalResult:
    """One setting's ``EvalResult`` through the chosen engine (``result.engine`` says which).

    Raises on any failure of the chosen engine; never falls back. ``cube_provider(method,
    threshold, seed)`` supplies cubes (e.g. from an in-memory cache); by default
    ``get_cube`` loads or builds one over ``grid`` (cached on disk).
    """
    setting = setting.validated()
    ev = _evaluator(source, ood)
    p = setting.params.get("p")
    choice = choose_engine(ev, setting.method, setting.threshold_mode, engine, p=p, grid=grid,
                           score=setting.score)
    if choice.engine == "exact":
        return ev.evaluate(setting)
    if cube_provider is not None:
        cube = cube_provider(setting.method, setting.threshold_mode, setting.seed)
    else:
        cube = get_cube(ev, setting.method, grid, setting.threshold_mode, setting.seed,
                        cache_dir=cache_dir, use_cache=use_cache)
    return point_result(cube, float(p), setting.score, setting.convention, ev.ood_names,
                        ev.bundle.groups)
