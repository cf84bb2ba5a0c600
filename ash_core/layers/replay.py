"""Replay: shape a cached layer's maps and run the network's tail to logits.

A ``LayerStore`` gives an ``Evaluator`` logits from a layer's maps through its tail instead
of penultimate features through the head, so metrics, scores and accuracy are computed by
the very same code (``LayerEvaluator``). At ``penultimate`` the bundle's own Evaluator
serves (``layer_evaluator``). Shaping is per sample over the whole map: C*H*W for a CNN
block (as the official code on 4-D tensors), T*C for a transformer block's tokens (the same
rule: positions and channels together; docs/where.md says why not per token); only local
(per-sample) thresholds, since maps of ``id_fit`` are not cached.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence

import numpy as np
import torch

from ash_core.bundle import Bundle
from ash_core.device import DeviceLike, resolve_device
from ash_core.engine.blocks import score_blocks
from ash_core.engine.exact import Evaluator
from ash_core.engine.memo import Once
from ash_core.errors import ParameterError
from ash_core.features import get_feature_score
from ash_core.layers.store import PENULTIMATE, LayerMaps, open_layers
from ash_core.maths.scores import get_score, list_scores
from ash_core.maths.shaping import rank_order
from ash_core.methods import Shaper, get_method
from ash_core.setting import Setting

BATCH = 256


WHY = {
    "baseline": "ReAct clips at a percentile of ID training activations and SCALE is defined "
                "on the penultimate features; neither has statistics of inner maps here",
    "logits": "it acts on the logits, which do not depend on where shaping happens",
    "head": "it rewrites the final linear layer, not a block's output",
    "features": "it scores penultimate features with state fitted on id_fit features",
}


def refusal(method: str, threshold_mode: str = "local") -> str | None:
    """Why ``method`` with ``threshold_mode`` cannot be shown at an inner layer (None: it can; the
    per-sample ASH variants with local thresholds)."""
    spec = get_method(method)
    if spec.variant is not None:
        return (f"{method} reads the bundle's stored {spec.variant!r} penultimate features; "
                "it has no meaning at an inner layer (use it at the penultimate layer)")
    if spec.family != "ash":
        return (f"{method} is not an ASH variant: "
                f"{WHY.get(spec.family, 'only ASH variants prune a map per sample')}")
    if threshold_mode != "local":
        return (f"{method} with {threshold_mode} thresholds needs the activations of ID training "
                "maps, which are not cached (use local thresholds)")
    return None


def _shape(shaper: Shaper | None, x: torch.Tensor, order: torch.Tensor | None, split: str,
           first: int) -> torch.Tensor:
    """``x`` (rows ``first`` on of ``split``) shaped by ``shaper`` (None: as it is)."""
    if shaper is None or shaper.spec.keeps_features:
        return x
    return shaper(x, order=order if shaper.spec.uses_order(shaper.threshold_mode) else None,
                  split=split, rows=first)


def replay_batches(maps: LayerMaps, layer: str, split: str,
                   shapers: Sequence[Shaper | None], batch: int = BATCH,
                   device: str | torch.device = "cpu") -> Iterator[list[torch.Tensor]]:
    """Per batch of ``batch`` rows of ``split``: the logits (float32, CPU) of every shaper
    applied to ``layer``'s maps (None: unshaped). Each batch is widened to float32 and ranked
    once for all shapers (a sweep over p costs one sort per row, not one per p); every
    shaper's logits are the same numbers as ``replay_logits`` with that shaper alone."""
    device = torch.device(device)
    tail = maps.tail(layer).to(device)
    stored = maps.maps(layer, split)
    ranked = any(s is not None and not s.spec.keeps_features and s.spec.uses_order(s.threshold_mode)
                 for s in shapers)
    with torch.inference_mode():
        for i in range(0, len(stored), batch):
            x = torch.from_numpy(stored[i:i + batch].astype(np.float32)).to(device)
            shape = x.shape
            if x.dim() == 3:  # tokens [B, T, C]: one row of T*C units per sample
                x = x.reshape(len(x), -1)
            order = rank_order(x).long() if ranked else None  # int64: no cast per p
            yield [tail(_shape(s, x, order, split, i).reshape(shape)).float().cpu()
                   for s in shapers]


def replay_logits(maps: LayerMaps, layer: str, split: str, shaper: Shaper | None = None,
                  batch: int = BATCH, device: str | torch.device = "cpu") -> torch.Tensor:
    """Logits [N, classes] (float32, CPU) of ``split`` with ``shaper`` applied to ``layer``'s
    maps (None: unshaped), in batches of ``batch`` rows on ``device``."""
    outs = [b[0] for b in replay_batches(maps, layer, split, [shaper], batch, device)]
    return torch.cat(outs) if outs else torch.empty(0, maps.num_classes)


class LayerStore:
    """A layer's store: its maps shaped and replayed through the network's tail, in place
    of penultimate features through the head (what an ``Evaluator`` reads of a
    ``FeatureStore`` to score splits). Serves ``none`` and the per-sample ASH variants
    with local thresholds and scores on logits (``check``)."""

    def __init__(self, bundle: Bundle, layer: str, device: DeviceLike = "auto",
                 batch: int = BATCH):
        maps = open_layers(bundle)
        if maps is None:
            raise ParameterError(
                f"bundle {bundle.name} has no layer maps, so --layer {layer} cannot be "
                "replayed; re-extract with `ash-explore extract --layers layer1,layer2,...` "
                "(or `make layers` for the demo bundles).")
        maps.info(layer)
        self.bundle, self.maps, self.layer = bundle, maps, layer
        self.device, self.batch = resolve_device(device), batch
        self._base_logits: dict[str, torch.Tensor] = {}
        self._unshaped = Once()  # (split, score) -> (predictions, scores)

    def check(self, setting: Setting) -> None:
        """ParameterError for a setting with no meaning at this layer (``refusal``)."""
        baseline = setting.method == "none" or get_method(setting.method).fixed_score
        why = None if baseline else refusal(setting.method, setting.threshold_mode)
        if why:
            raise ParameterError(
                f"--layer {self.layer}: {why}; at inner layers use a per-sample method "
                "(ash-p/ash-b/ash-s/ash-rand, threshold local), or none for no shaping.")
        if get_feature_score(setting.score) is not None:
            raise ParameterError(
                f"--layer {self.layer}: score {setting.score!r} is fitted on penultimate "
                "id_fit features; at inner layers use a score on logits "
                f"({', '.join(list_scores())}).")

    def base_logits(self, name: str, in_use: Collection[str] = ()) -> torch.Tensor:
        """Unshaped logits of a split replayed from this layer, on the CPU (kept)."""
        if name not in self._base_logits:
            self._base_logits[name] = replay_logits(self.maps, self.layer, name, None,
                                                    self.batch, self.device)
        return self._base_logits[name]

    def logit_blocks(self, shaper: Shaper, name: str, in_use: Collection[str] = ()
                     ) -> Iterator[torch.Tensor]:
        """The layer's maps shaped and replayed through the tail, batch by batch."""
        if shaper.spec.keeps_features:
            yield self.base_logits(name)
            return
        for (logits,) in replay_batches(self.maps, self.layer, name, [shaper], self.batch,
                                        self.device):
            yield logits

    def shaped_logits(self, shaper: Shaper, name: str, in_use: Collection[str] = ()
                      ) -> torch.Tensor:
        """Logits of a split shaped at this layer, on the CPU."""
        if shaper.spec.keeps_features:
            return self.base_logits(name)
        return replay_logits(self.maps, self.layer, name, shaper, self.batch, self.device)

    def unshaped(self, name: str, score: str, in_use: Collection[str] = ()
                 ) -> tuple[torch.Tensor, np.ndarray]:
        """(top-1 predictions, scores) of a split's unshaped replay under ``score``."""
        return self._unshaped.get(
            (name, score), lambda: score_blocks([self.base_logits(name)], get_score(score)))

    def unshaped_predictions(self, name: str, score: str, in_use: Collection[str] = ()
                             ) -> torch.Tensor:
        """Top-1 predictions of a split's unshaped replay."""
        return self.unshaped(name, score, in_use)[0]


class LayerEvaluator(Evaluator):
    """An Evaluator over a layer's store (``LayerStore``; see the module docstring)."""

    def __init__(self, bundle: Bundle, layer: str, ood: Iterable[str] | None = None,
                 device: DeviceLike = "auto", batch: int = BATCH):
        super().__init__(LayerStore(bundle, layer, device, batch), ood)

    @property
    def layer(self) -> str:
        return self.store.layer

    @property
    def maps(self) -> LayerMaps:
        return self.store.maps


def layer_evaluator(bundle: Bundle, layer: str | None = None,
                    ood: Iterable[str] | None = None,
                    device: str | torch.device = "auto") -> Evaluator:
    """The Evaluator for ``layer`` (None or ``penultimate``: the bundle's own Evaluator)."""
    if layer in (None, PENULTIMATE):
        return Evaluator(bundle, ood, device=device)
    return LayerEvaluator(bundle, layer, ood, device=device)
