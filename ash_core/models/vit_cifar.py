"""A hybrid ViT for 32x32 CIFAR images, registered with timm so that extraction builds it
through ``--model timm:NAME`` like any timm model.

The network is timm's own ``VisionTransformer`` whose patch embedding is timm's
``HybridEmbed`` over a CNN stem, as timm's hybrid ViTs (``vit_*_r50_*``) are built: the stem
is the first two stages of the CIFAR ResNet-56 (conv1, layer1, layer2: 32 channels at 16x16),
cut into 4x4-cell patches (16 tokens, each seeing 8x8 pixels), then a class token, learned
position embeddings, pre-norm transformer blocks, the final LayerNorm and a linear head. The
pre-logits (``forward_head(x, pre_logits=True)``) are the class token after that LayerNorm:
not rectified, about half negative, unlike the post-ReLU features ASH was designed for.

Importing this module registers the architecture; ``scripts/train_vit_cifar.py`` trains it
(the stem frozen at the ResNet-56 weights) and writes its weights.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import HybridEmbed
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer

from ash_core.models.architectures import BasicBlock

#: the registered name: a ViT over a ResNet-56 stem (stages 1-2), for CIFAR-10
NAME = "vit_hybrid_r56s2_cifar10"

#: the input statistics of the CIFAR ResNet weights the stem comes from
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class CifarResNetStem(nn.Module):
    """The first ``stages`` stages of a CIFAR ResNet-(6n+2), with the same layout and state-dict
    keys as ``CifarResNet`` (``conv1``, ``bn1``, ``layer1``, ``layer2``), so its weights load
    from a CIFAR ResNet checkpoint by dropping the later keys. Output: post-ReLU maps."""

    def __init__(self, depth: int = 56, stages: int = 2):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        widths = (16, 32, 64)[:stages]
        in_planes = 16
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(in_planes, planes, stride)]
            blocks += [BasicBlock(planes, planes, 1) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            in_planes = planes
        self.stages = stages
        self.num_features = in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        for i in range(self.stages):
            out = getattr(self, f"layer{i + 1}")(out)
        return out


def _cfg() -> dict:
    # no url / hf_hub_id: there is nothing to download; the weights are trained here
    return {"num_classes": 10, "input_size": (3, 32, 32), "pool_size": None, "crop_pct": 1.0,
            "interpolation": "bilinear", "fixed_input_size": True, "mean": MEAN, "std": STD,
            "first_conv": "patch_embed.backbone.conv1", "classifier": "head",
            "license": "bsd-2-clause (stem weights); trained by scripts/train_vit_cifar.py"}


default_cfgs = generate_default_cfgs({NAME: _cfg()})


@register_model
def vit_hybrid_r56s2_cifar10(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT (width 128, depth 4, 4 heads, MLP ratio 4) over a ResNet-56 stem (stages 1-2) with
    4x4 patches of its 16x16x32 map: 16 tokens + a class token, for 32x32 inputs."""
    stem = CifarResNetStem(56, 2)
    args = {"img_size": 32, "patch_size": 4, "embed_dim": 128, "depth": 4, "num_heads": 4,
            "mlp_ratio": 4.0, "num_classes": 10, "class_token": True, "global_pool": "token"}
    args.update(kwargs)
    args["embed_layer"] = _embed(stem)
    return build_model_with_cfg(VisionTransformer, NAME, pretrained, **args)


def _embed(stem: nn.Module):
    def make(**kwargs) -> HybridEmbed:
        # the stem's output size is known: no probing forward pass through random weights
        return HybridEmbed(backbone=stem, feature_size=16, feature_ratio=2, **kwargs)

    return make
