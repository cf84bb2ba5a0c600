"""Replay: shape a cached layer's maps and run the network's tail to logits.

``LayerEvaluator`` is an ``Evaluator`` whose logits come from a layer's maps through its
tail instead of penultimate features through the head, so metrics, scores and accuracy are
computed by the very same code. At ``penultimate`` it *is* the bundle's Evaluator (bit for
bit today's evaluation). Shaping is per sample over C*H*W (as the official code on 4-D
tensors); only local (per-sample) thresholds, since maps of ``id_fit`` are not cached.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from ..bundle import Bundle
from ..device import resolve_device
from ..errors import ParameterError
from ..evaluation import Evaluator
from ..registry import Shaper
from ..setting import Setting, as_setting
from .store import PENULTIMATE, LayerMaps, open_layers

BATCH = 256


def pick_device(name: str | torch.device | None = "auto") -> torch.device:
    """The project's device rule (``ash_core.device.resolve_device``; None: ``ASH_DEVICE``)."""
    return resolve_device(name)


def replay_logits(maps: LayerMaps, layer: str, split: str, shaper: Shaper | None = None,
                  batch: int = BATCH, device: str | torch.device = "cpu") -> torch.Tensor:
    """Logits [N, classes] (float32, CPU) of ``split`` with ``shaper`` applied to ``layer``'s
    maps (None: unshaped), in batches of ``batch`` rows on ``device``."""
    device = torch.device(device)
    tail = maps.tail(layer).to(device)
    stored = maps.maps(layer, split)
    outs = []
    with torch.inference_mode():
        for i in range(0, len(stored), batch):
            x = torch.from_numpy(stored[i:i + batch].astype("float32")).to(device)
            if shaper is not None and not shaper.spec.identity:
                x = shaper(x)
            outs.append(tail(x).float().cpu())
    classes = maps.num_classes
    return torch.cat(outs) if outs else torch.empty(0, classes)


def layer_names(bundle: Bundle) -> list[str]:
    """Layers ``--layer`` accepts for this bundle (``penultimate`` always)."""
    maps = open_layers(bundle)
    return maps.names if maps is not None else [PENULTIMATE]


class LayerEvaluator(Evaluator):
    """An Evaluator whose logits are replayed from ``layer`` (see the module docstring)."""

    def __init__(self, bundle: Bundle, layer: str, ood: Iterable[str] | None = None,
                 device: str = "auto", batch: int = BATCH, warn: bool = True):
        super().__init__(bundle, ood, warn=warn)
        maps = open_layers(bundle)
        if maps is None:
            raise ParameterError(
                f"bundle {bundle.name} has no layer maps, so --layer {layer} cannot be "
                "replayed; re-extract with `ash-explore extract --layers layer1,layer2,...` "
                "(or `make layers` for the demo bundles).")
        maps.info(layer)
        self.maps, self.layer = maps, layer
        self.device, self.batch = pick_device(device), batch

    def with_ood(self, ood: Iterable[str] | None) -> LayerEvaluator:
        ev = LayerEvaluator.__new__(LayerEvaluator)
        ev.__dict__.update(self.__dict__)
        ev.ood_names = [s.name for s in self.bundle.select_ood(ood)]
        return ev

    def shaper(self, method: str | Setting, p: float | None = None, threshold: str = "local",
               seed: int = 0, *, params: Mapping[str, float] | None = None) -> Shaper:
        """A shaper for this layer's maps: per-sample methods only (no fitted statistics,
        no head rewriting), since neither ID training maps nor an inner head exist."""
        setting = as_setting(method, p, threshold, seed=seed, params=params)
        variant = setting.shaper().spec.variant
        if variant is not None:
            raise ParameterError(
                f"{setting.method} reads the bundle's stored {variant!r} penultimate features; "
                f"it has no meaning at {self.layer} (use it at the penultimate layer).")
        shaper = setting.shaper() if setting.threshold == "local" else None
        if shaper is None or shaper.needs_fit or shaper.spec.head_fn is not None:
            raise ParameterError(
                f"{setting.method} with threshold {setting.threshold!r} needs fitted statistics "
                f"of ID training maps or a head at {self.layer}, which are not cached; at inner "
                "layers use a per-sample method (ash-p/ash-b/ash-s/ash-rand, threshold local).")
        return shaper

    def base_logits(self, name: str) -> torch.Tensor:
        if name not in self._base_logits:
            self._base_logits[name] = replay_logits(self.maps, self.layer, name, None,
                                                    self.batch, self.device)
        return self._base_logits[name]

    def _device_base_logits(self, name: str) -> torch.Tensor:
        return self.base_logits(name)  # used by main's id_accuracy (unshaped)

    def _device_shaped_logits(self, shaper: Shaper, name: str) -> torch.Tensor:
        return self.shaped_logits(shaper, name)  # main's Evaluator.evaluate calls this one

    def shaped_logits(self, shaper: Shaper, name: str) -> torch.Tensor:
        if shaper.spec.identity:
            return self.base_logits(name)
        return replay_logits(self.maps, self.layer, name, shaper, self.batch, self.device)


def layer_evaluator(bundle: Bundle, layer: str | None = None,
                    ood: Iterable[str] | None = None,
                    device: str | torch.device = "auto") -> Evaluator:
    """The Evaluator for ``layer`` (None or ``penultimate``: the bundle's own Evaluator)."""
    if layer in (None, PENULTIMATE):
        return Evaluator(bundle, ood, device=device)
    return LayerEvaluator(bundle, layer, ood, device=device)
