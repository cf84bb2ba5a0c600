"""Sweeps over (method, p): the paper-style table and the dashboard's trade-off views.

``sweep`` returns one row per (method, p). ASH methods (ash-p, ash-s, ash-b,
ash-rand) come from score cubes (``ash_core.cube``): every grid p of every ASH
variant is computed in one pass over each split and cached beside the bundle, so a
sweep afterwards, or a slider move, is a lookup plus metrics. Other registered
methods (none, react, scale) are evaluated per point with ``Evaluator`` (one pass each).

Public cube API (for the dashboard's trade-off and slider views)::

    cube = get_cube(bundle_or_evaluator, "ash-s", grid, threshold="local", seed=0,
                    cache_dir=None)             # ScoreCube, cached / reused / rebuilt
    cube.grid                                   # sorted unique p values [P]
    cube.index(p)                               # row of p in the grid
    cube.splits[name].energy / .msp / .maxlogit # [P, N] float32; .pred [P, N] int32
    cube.unshaped[name]                         # the plain head, [1, N]
    cube.scores(split, p, score), cube.preds(split, p), cube.accuracy_curve()
    point_metrics(cube, p, score="energy", convention="id", ood=None)
        # -> {"id_accuracy": {"shaped", "unshaped"}, "ood": {name: {fpr95, auroc,
        #     aupr_in, aupr_out}}, "average": {...}, ...} like EvalResult.to_dict()
    get_cubes(source, methods, grid, ...)       # several methods, built in one pass
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ash_core.bundle import Bundle
from ash_core.cube import (
    CUBE_METHODS,
    ScoreCube,
    SplitCube,
    build_cubes,
    get_cube,
    get_cubes,
    is_cube_method,
    point_metrics,
    point_result,
)
from ash_core.engine.exact import Evaluator
from ash_core.engine.result import EvalResult, group_averages
from ash_core.errors import ParameterError
from ash_core.features import get_feature_score
from ash_core.maths.metrics import METRIC_NAMES, check_convention
from ash_core.maths.shaping import check_percentile
from ash_core.methods import get_method
from ash_core.setting import Setting

__all__ = [
    "CUBE_METHODS", "ScoreCube", "SplitCube", "build_cubes", "get_cube", "get_cubes",
    "is_cube_method", "parse_grid", "point_metrics", "sweep", "sweep_results",
    "sweep_settings", "sweep_table",
]


def parse_grid(text: str) -> list[float]:
    """Parse ``START:STOP:STEP`` (STOP inclusive) or a comma list into percentiles."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [float(v) for v in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop = parts[0], parts[1]
            step = parts[2] if len(parts) == 3 else 1.0
            if step <= 0 or stop < start:
                raise ValueError
            n = int(np.floor((stop - start) / step + 1e-9)) + 1
            values = [round(start + i * step, 10) for i in range(n)]
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ParameterError(
            f"cannot parse the p grid {text!r}; use START:STOP:STEP (STOP inclusive, e.g. "
            "60:95:5) or a comma list (e.g. 65,80,90)."
        ) from None
    if not values:
        raise ParameterError(f"the p grid {text!r} is empty.")
    for v in values:
        try:
            check_percentile(v)
        except ParameterError:  # the CLI names the grid value
            raise ParameterError(f"p grid value {v:g} is outside [0, 100).") from None
    return values


def _row(setting: Setting, result: dict, groups: Mapping[str, Sequence[str]]) -> dict:
    row = {"method": setting.method, "p": np.nan if setting.p is None else setting.p,
           "id_acc": result["id_accuracy"]["shaped"],
           "id_acc_unshaped": result["id_accuracy"]["unshaped"]}
    for name, metrics in result["ood"].items():
        for k in METRIC_NAMES:
            row[f"{name}/{k}"] = metrics[k]
    for k, v in result["average"].items():
        row[f"average/{k}"] = v
    for group, avg in group_averages(result["ood"], groups).items():
        for k, v in avg.items():
            row[f"average ({group})/{k}"] = v
    return row


def sweep_settings(methods: Sequence[str], grid: Sequence[float], threshold_mode: str = "local",
                   score: str = "energy", convention: str = "id", seed: int = 0,
                   params: Mapping[str, Mapping[str, float]] | None = None) -> list[Setting]:
    """The validated settings of a sweep, in row order: each method at every grid p (one
    setting for methods without ``p``), in ``threshold_mode`` mode where the method supports
    it, else "local". ``params``: fixed values of other parameters, per method name."""
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ParameterError(
            "no methods to sweep; pass at least one, e.g. --methods ash-p,ash-b,ash-s "
            "(`ash-explore methods` lists them)."
        )
    params = params or {}
    settings = []
    for m in methods:
        spec = get_method(m)
        fixed = dict(params.get(m, {}))
        if "p" in fixed and spec.has_p:
            raise ParameterError(f"{m}: p is the swept parameter; give it as the grid, not as "
                                 "a fixed parameter.")
        mode = threshold_mode if threshold_mode in spec.threshold_modes else "local"
        base = Setting(m, fixed, mode, score, convention, seed)
        points = [base.with_params(p=float(p)) for p in grid] if spec.has_p else [base]
        settings += [s.validated() for s in points]
    return settings


def sweep(
    bundle: Bundle,
    methods: Sequence[str],
    grid: Sequence[float],
    threshold_mode: str = "local",
    score: str = "energy",
    convention: str = "id",
    ood: Iterable[str] | None = None,
    seed: int = 0,
    evaluator: Evaluator | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    params: Mapping[str, Mapping[str, float]] | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    engine: str = "auto",
) -> pd.DataFrame:
    """One row per (method, p): per-OOD-set and average metrics, ID accuracy shaped/unshaped.

    Columns: ``method``, ``p``, ``id_acc``, ``id_acc_unshaped``, ``{set}/{metric}`` for
    each OOD set and metric, and ``average/{metric}`` (rows in ``sweep_settings`` order:
    its ``label()`` names each row's parameters); ``frame.attrs["ties"]`` maps the label of
    each row whose ties are large to its ``EvalResult.to_dict()["ties"]``. Methods without a percentile
    (``none``) contribute a single row with ``p`` NaN. Methods whose grid strategy is
    "cube" come from cached score cubes (``cache_dir``, ``use_cache``, ``engine``: see
    ``get_cube``); a method that does not support ``threshold_mode`` is evaluated with local
    thresholds. ``params`` fixes other parameters per method (see ``sweep_settings``). A
    score on logits (gen, temp-scaling) is its own score whatever ``score`` says.
    ``progress(done, total)`` counts rows of features for the cube build, then points.
    """
    return sweep_table(sweep_results(
        bundle, methods, grid, threshold_mode, score, convention, ood, seed, evaluator,
        progress, params=params, cache_dir=cache_dir, use_cache=use_cache, engine=engine))


def sweep_results(
    bundle: Bundle,
    methods: Sequence[str],
    grid: Sequence[float],
    threshold_mode: str = "local",
    score: str = "energy",
    convention: str = "id",
    ood: Iterable[str] | None = None,
    seed: int = 0,
    evaluator: Evaluator | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    params: Mapping[str, Mapping[str, float]] | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    engine: str = "auto",
) -> list[tuple[Setting, EvalResult]]:
    """``sweep``'s rows before they become a table: each row's setting and its
    ``EvalResult``, per-sample scores included (a cube row's are the cube's scores at its
    p, ``point_result``; the others the exact engine's), so that intervals and counts
    (``reports.intervals``) come without evaluating anything again."""
    check_convention(convention)
    settings = sweep_settings(methods, grid, threshold_mode, score, convention, seed, params)
    ev = evaluator or Evaluator(bundle, ood)
    if not ev.ood_names:
        raise ParameterError(
            f"bundle {ev.bundle.name} has no OOD split selected; select at least one."
        )
    cubes = _cubes(ev, settings, [float(p) for p in grid], cache_dir=cache_dir,
                   use_cache=use_cache, backend=engine, progress=progress)
    out = []
    for i, s in enumerate(settings):
        if s.method in cubes:
            result = point_result(cubes[s.method], s.p, s.score, s.convention, ev.ood_names,
                                  ev.bundle.groups)
        else:
            result = ev.evaluate(s)
        out.append((s, result))
        if progress:
            progress(i + 1, len(settings))
    return out


def sweep_table(results: Sequence[tuple[Setting, EvalResult]]) -> pd.DataFrame:
    """The frame of ``sweep`` from ``sweep_results``' rows."""
    rows, ties = [], {}
    for s, r in results:
        result = r.to_dict()
        rows.append(_row(s, result, r.groups))
        if "ties" in result:
            ties[s.label()] = result["ties"]
    frame = pd.DataFrame(rows)
    frame.attrs["ties"] = ties
    return frame


def _cubes(ev: Evaluator, settings: Sequence[Setting], grid: list[float],
           **options) -> dict[str, ScoreCube]:
    """Score cubes of every cube-computed method of a sweep, one batch per threshold mode."""
    modes = {s.method: s.threshold_mode for s in settings  # a score on features is exact
             if is_cube_method(s.method) and get_feature_score(s.score) is None}
    seed = settings[0].seed if settings else 0
    cubes: dict[str, ScoreCube] = {}
    for mode in dict.fromkeys(modes.values()):
        batch = [m for m, t in modes.items() if t == mode]
        cubes.update(get_cubes(ev, batch, grid, mode, seed, **options))
    return cubes
