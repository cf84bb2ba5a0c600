"""Where to ASH: shape inside the network (issue 11; docs/where.md).

``store`` (maps and tails in a bundle), ``tails`` (tail architectures and weights),
``replay`` (shaping a layer's maps and running the tail), ``sweep`` (layers x p grid, cached).
"""

from .replay import LayerEvaluator, layer_evaluator, layer_names, replay_logits
from .store import PENULTIMATE, LayerMaps, open_layers
from .sweep import LayerSweep, layer_sweep

__all__ = ["PENULTIMATE", "LayerEvaluator", "LayerMaps", "LayerSweep", "layer_evaluator",
           "layer_names", "layer_sweep", "open_layers", "replay_logits"]
