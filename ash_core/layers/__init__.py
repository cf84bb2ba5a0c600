"""Where to ASH: shape inside the network (docs/where.md).

``store`` (maps and tails in a bundle), ``tails`` (tail architectures and weights),
``replay`` (shaping a layer's maps and running the tail), ``sweep`` (layers x p grid, cached
per layer in ``cache``), ``results`` (a layer's numbers as an ``EvalResult``).
"""

from ash_core.layers.replay import (
    LayerEvaluator,
    LayerStore,
    layer_evaluator,
    refusal,
    replay_logits,
)
from ash_core.layers.results import engine_of, layer_result, layer_sweep_results, sweep_result
from ash_core.layers.store import PENULTIMATE, LayerMaps, open_layers
from ash_core.layers.sweep import LayerSweep, layer_sweep

__all__ = ["PENULTIMATE", "LayerEvaluator", "LayerMaps", "LayerStore", "LayerSweep",
           "engine_of", "layer_evaluator", "layer_result", "layer_sweep",
           "layer_sweep_results", "open_layers", "refusal", "replay_logits", "sweep_result"]
