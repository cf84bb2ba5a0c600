"""Tail architectures: where a layer's map is taken in a model, and the rest of the network
(the *tail*) that turns a (shaped) map into logits, built from a reference (a built-in or
torchvision model name plus the layer name) and the tail's own weights; never pickled code.

Supported tails: the built-in CIFAR ResNets (``layer1``..``layer3``: the last block of each
stage, after the residual add and before its final ReLU, where the official ASH code hooks)
and torchvision ResNets (``layer1``..``layer4``: the stage's output, after its final ReLU,
since torchvision reuses one ReLU module per block) here; timm ``VisionTransformer`` blocks
(``blocks.0``.., token maps) in ``vit``. Other models' maps can be cached by any module name
but have no tail, so they cannot be replayed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ash_core.errors import ModelError
from ash_core.layers import vit
from ash_core.layers.tail_weights import load_tail_weights
from ash_core.models.architectures import CifarResNet

CIFAR_RESNETS = ("cifar_resnet20", "cifar_resnet32", "cifar_resnet44", "cifar_resnet56")
TV_STAGES = ("layer1", "layer2", "layer3", "layer4")


def _is_tv_resnet(arch: str) -> bool:
    return arch.startswith(("resnet", "wide_resnet", "resnext"))


def stages(arch: str) -> tuple[str, ...]:
    """The layer names that have a tail for ``arch`` (empty: maps only)."""
    if arch in CIFAR_RESNETS:
        return ("layer1", "layer2", "layer3")
    if _is_tv_resnet(arch):
        return TV_STAGES
    return ()


def has_tail(arch: str, model: nn.Module, layer: str) -> bool:
    """Whether ``layer``'s maps can be replayed (its tail is stored with them)."""
    if vit.is_timm(arch) and vit.is_vit(model):
        return layer in vit.block_names(model)
    return layer in stages(arch)


def capture_point(arch: str, model: nn.Module, layer: str) -> tuple[str, str]:
    """(module name whose output is the map, a description of where that is)."""
    if vit.is_timm(arch) and vit.is_vit(model):
        return vit.capture_point(arch, model, layer)
    modules = dict(model.named_modules())
    if arch in CIFAR_RESNETS and layer in stages(arch):
        last = len(getattr(model, layer)) - 1
        return f"{layer}.{last}.add", "last block of the stage, after the residual add, " \
                                      "before the final ReLU (the official ASH hook)"
    if layer not in modules or not layer:
        names = [n for n in modules if n and "." not in n]
        raise ModelError(f"--layers: {layer!r} is not a module of {arch}; top-level modules: "
                         f"{', '.join(names)}.")
    return layer, "the module's output"


def _tail_prefixes(arch: str, layer: str) -> tuple[str, ...]:
    names = stages(arch)
    if layer not in names:
        raise ModelError(
            f"no tail for layer {layer!r} of {arch}: replay supports "
            + (f"{', '.join(names)}" if names else "the CIFAR ResNets and torchvision ResNets")
            + " (and the penultimate layer of any bundle)."
        )
    later = names[names.index(layer) + 1:]
    head = "linear." if arch in CIFAR_RESNETS else "fc."
    return tuple(f"{n}." for n in later) + (head,)


def tail_state(arch: str, model: nn.Module, layer: str) -> dict[str, np.ndarray]:
    """The weights (and batch-norm statistics) the tail of ``layer`` needs, as numpy arrays."""
    if vit.is_timm(arch):
        return vit.tail_state(arch, model, layer)
    prefixes = _tail_prefixes(arch, layer)
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()
            if k.startswith(prefixes) and not k.endswith("num_batches_tracked")}


def channels_last(m: torch.Tensor) -> torch.Tensor:
    """``m`` in the channels-last layout the conv tails compute in: oneDNN's convolutions on
    NHWC maps take about 15% less time than on NCHW ones (``benchmarks/bench_layers.py
    --compare``), the same function up to float rounding; every replay of a tail takes this
    one path, so the cube, the sweep and the exact replay agree bit for bit. A tail without
    convolutions (the last stage's: pooling and the head) keeps NCHW, where the copy would
    be all the change."""
    return m.contiguous(memory_format=torch.channels_last)


class _CifarTail(nn.Module):
    def __init__(self, model: nn.Module, layer: str):
        super().__init__()
        self.model, self.layer = model, layer
        self.convs = layer != model.STAGES[-1]

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        return self.model.forward_from(self.layer, channels_last(m) if self.convs else m)


class _TorchvisionResNetTail(nn.Module):
    def __init__(self, model: nn.Module, layer: str):
        super().__init__()
        self.model, self.later = model, TV_STAGES[TV_STAGES.index(layer) + 1:]

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        out = channels_last(m) if self.later else m
        for name in self.later:
            out = getattr(self.model, name)(out)
        return self.model.fc(torch.flatten(self.model.avgpool(out), 1))


def _full_model(arch: str, num_classes: int) -> nn.Module:
    if arch in CIFAR_RESNETS:
        return CifarResNet(int(arch.removeprefix("cifar_resnet")), num_classes)
    import torchvision

    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """Fold every eval-mode batch norm into the convolution before it, in place: ``convI`` +
    ``bnI`` attribute pairs (ResNet blocks) and adjacent (Conv2d, BatchNorm2d) children of a
    Sequential (torchvision's ``downsample``). The same function up to float rounding (~1e-6
    relative), one memory pass less per convolution: the replay's speed (docs/where.md)."""
    for module in model.modules():
        for i in (1, 2, 3):
            conv, bn = getattr(module, f"conv{i}", None), getattr(module, f"bn{i}", None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, f"conv{i}", fuse_conv_bn_eval(conv, bn))
                setattr(module, f"bn{i}", nn.Identity())
        if isinstance(module, nn.Sequential):
            kids = list(module)
            for j in range(len(kids) - 1):
                if isinstance(kids[j], nn.Conv2d) and isinstance(kids[j + 1], nn.BatchNorm2d):
                    module[j] = fuse_conv_bn_eval(kids[j], kids[j + 1])
                    module[j + 1] = nn.Identity()
    return model


def build_tail(arch: str, layer: str, num_classes: int, state: Mapping[str, np.ndarray],
               model_args: Mapping[str, Any] | None = None) -> nn.Module:
    """The tail of ``layer`` in eval mode with ``state`` loaded (every needed key checked),
    batch norms folded into their convolutions (``fold_batch_norms``), weights and maps in
    the channels-last layout (``channels_last``). A timm ``arch`` is
    built from its ``create_model`` arguments ``model_args`` (its head size among them)."""
    if vit.is_timm(arch):
        return vit.build_tail(arch, layer, state, model_args)
    prefixes = _tail_prefixes(arch, layer)
    model = _full_model(arch, num_classes)
    need = [k for k in model.state_dict()
            if k.startswith(prefixes) and not k.endswith("num_batches_tracked")]
    load_tail_weights(model, need, state, arch, layer)
    fold_batch_norms(model.eval()).to(memory_format=torch.channels_last)
    tail = _CifarTail(model, layer) if arch in CIFAR_RESNETS else \
        _TorchvisionResNetTail(model, layer)
    return tail.eval()
