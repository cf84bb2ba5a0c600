"""A layer's numbers as the ``EvalResult`` every view already draws (the dashboard's layer
control): shaping at an inner layer, replayed through the network's tail.

``layer_result`` takes the numbers from a layer sweep when the setting is on its grid (energy
score: a lookup plus metrics) and replays exactly otherwise (``LayerEvaluator``); both are the
same computation (``replay.replay_batches``), so they agree bit for bit. ``replay.refusal``
says why a method has no meaning at an inner layer. ``result.engine`` is ``engine_of(layer)``, so results
of different layers are never mistaken for each other (the views cache by it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ash_core.bundle import Bundle
from ash_core.engine.result import EvalResult
from ash_core.errors import ParameterError
from ash_core.layers.replay import LayerEvaluator
from ash_core.layers.sweep import LayerSweep, layer_sweep
from ash_core.maths.metrics import check_convention, ood_metrics_many
from ash_core.methods import create_method
from ash_core.setting import Setting


def engine_of(layer: str) -> str:
    """The ``EvalResult.engine`` of numbers replayed from ``layer``."""
    return f"replay:{layer}"


def _ood_names(bundle: Bundle, ood: Sequence[str] | None) -> list[str]:
    names = [s.name for s in bundle.select_ood(ood)]
    if not names:
        raise ParameterError(f"bundle {bundle.name}: no OOD split selected; select at least "
                             "one.")
    return names


def sweep_result(sweep: LayerSweep, bundle: Bundle, layer: str, p: float | None,
                 convention: str = "id", ood: Sequence[str] | None = None,
                 seed: int = 0) -> EvalResult | None:
    """The energy ``EvalResult`` of (``sweep.method``, p) at ``layer`` from the sweep, or of
    no shaping (``p`` None); None when p is not on the sweep's grid."""
    check_convention(convention)
    i = None if p is None else sweep.index_of(p)
    if p is not None and i is None:
        return None
    scores = sweep.base_scores(layer) if p is None else sweep.scores(layer, p)
    names = _ood_names(bundle, ood)
    id_scores = scores[sweep.splits[0][0]]
    ood_scores = {n: scores[n] for n in names}
    unshaped = sweep.unshaped_accuracy(layer)
    method = "none" if p is None else sweep.method
    params = dict(create_method(method, p=p, seed=seed).params)
    return EvalResult(
        bundle=bundle.name, setting=Setting(method, params, "local", "energy", convention, seed),
        id_accuracy={"shaped": unshaped if i is None else float(sweep.accuracy(layer)[i]),
                     "unshaped": unshaped},
        ood=ood_metrics_many(id_scores, ood_scores, convention),
        id_scores=np.asarray(id_scores), ood_scores=ood_scores, engine=engine_of(layer),
        groups=bundle.groups)


def layer_result(evaluator: LayerEvaluator, setting: Setting,
                 sweep: LayerSweep | None = None) -> EvalResult:
    """The numbers of a setting shaped at ``evaluator.layer`` (``none``: the unshaped replay):
    from ``sweep`` when it holds them, else an exact replay. Refused (ParameterError, with
    ``replay.refusal``'s reason) for methods that have no meaning at an inner layer."""
    setting = setting.validated()
    evaluator.shaper(setting)  # refuses what has no meaning at the layer
    bundle, layer = evaluator.bundle, evaluator.layer
    if sweep is not None and setting.score == "energy" and layer in sweep.layers and \
            (setting.method == "none" or setting.method == sweep.method):
        found = sweep_result(sweep, bundle, layer, setting.p, setting.convention,
                             evaluator.ood_names, setting.seed)
        if found is not None:
            return found
    result = evaluator.evaluate(setting)
    result.engine = engine_of(layer)
    return result


def layer_sweep_results(bundle: Bundle, layer: str, methods: Sequence[str],
                        grid: Sequence[float], convention: str = "id",
                        ood: Sequence[str] | None = None, seed: int = 0,
                        device: str = "auto") -> list[tuple[Setting, EvalResult]]:
    """The rows of ``sweep_frame`` at ``layer`` as (setting, ``EvalResult``), per-sample
    scores included, from the same cached layer sweeps (so their intervals need no
    replay)."""
    out = []
    for method in methods:
        sw = layer_sweep(bundle, [layer], method, grid, seed, device)
        for p in sw.grid:
            result = sweep_result(sw, bundle, layer, p, convention, ood, seed)
            assert result is not None  # p is on the sweep's own grid
            out.append((result.setting, result))
    return out
