"""Transformer tails: the output of block N of a timm ``VisionTransformer`` (``blocks.N``), a
``[N, T, C]`` token map (T tokens: the prefix tokens, CLS and registers, then the patches),
and the network after it: the later blocks, the final norm, the pooling or CLS selection,
``fc_norm`` and the head, run by the model's own ``forward_head``.

The tail is built from the timm architecture name and the ``create_model`` arguments
recorded in the bundle (never pickled code), then loaded with the tail's own weights. It is
generic over ``VisionTransformer`` instances: any ``patch_embed`` (a CNN stem in hybrids is
simply not part of the tail), class token or not, register tokens, any global pooling
(``token``, ``avg``, ``map``) and ``fc_norm``. Other timm models are not replayed: their
blocks take extra inputs (rotary embeddings, relative position biases) or are not a flat
sequence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ash_core.errors import ModelError
from ash_core.layers.tail_weights import load_tail_weights

PREFIX = "timm:"
#: parameters the network uses before its first block (the embedding side), never in a tail
EMBEDDING = ("patch_embed.", "cls_token", "reg_token", "pos_embed", "norm_pre.")
_BLOCK = re.compile(r"^blocks\.(\d+)$")


def is_timm(arch: str) -> bool:
    return arch.startswith(PREFIX)


def is_vit(model: nn.Module) -> bool:
    """A timm ``VisionTransformer`` (its subclasses included)."""
    from timm.models.vision_transformer import VisionTransformer

    return isinstance(model, VisionTransformer)


def block_names(model: nn.Module) -> tuple[str, ...]:
    """``blocks.0`` ... ``blocks.{depth-1}``: the layers a ViT's maps are cached at."""
    return tuple(f"blocks.{i}" for i in range(len(model.blocks))) if is_vit(model) else ()


def block_index(arch: str, model: nn.Module, layer: str) -> int:
    """The index N of ``blocks.N``; ModelError for anything that is not a block of the ViT."""
    names = block_names(model)
    m = _BLOCK.match(layer)
    if m is None or layer not in names:
        raise ModelError(
            f"--layers: {layer!r} is not a transformer block of {arch}; its layers are the "
            f"block outputs {names[0]} ... {names[-1]} (the token maps [N, T, C] that ASH "
            "shapes; the penultimate features are cached anyway).")
    return int(m.group(1))


def capture_point(arch: str, model: nn.Module, layer: str) -> tuple[str, str]:
    """(module name whose output is the token map, where that is)."""
    block_index(arch, model, layer)
    if not isinstance(model.get_classifier(), nn.Linear):
        raise ModelError(f"--layers {layer}: {arch} has no classifier (num_classes=0), so its "
                         "blocks cannot be replayed to logits; build it with its head "
                         "(num_classes=N) and weights that include it.")
    tokens = model.num_prefix_tokens
    return layer, (f"output of transformer block {layer} (after its residual adds): the "
                   f"[T, C] token map, {tokens} prefix token(s) first")


def _in_tail(key: str, index: int) -> bool:
    """Whether the state key ``key`` is used after block ``index``: everything but the
    embedding side and blocks 0..index (so a parameter timm adds after the blocks is in)."""
    if key.startswith(EMBEDDING):
        return False
    m = re.match(r"^blocks\.(\d+)\.", key)
    return m is None or int(m.group(1)) > index


def tail_state(arch: str, model: nn.Module, layer: str) -> dict[str, np.ndarray]:
    """The weights the tail of ``blocks.N`` needs, as numpy arrays."""
    index = block_index(arch, model, layer)
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()
            if _in_tail(k, index)}


def _tupled(value: Any) -> Any:
    """JSON lists back to the tuples ``create_model`` was given (``depths=(1, 1)``)."""
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def create(arch: str, model_args: Mapping[str, Any] | None) -> nn.Module:
    """``timm.create_model`` of the recorded architecture (no weights, nothing downloaded)."""
    import timm

    # the project's own timm architectures (the demo hybrid ViT) register themselves when
    # imported: a fresh process replaying a bundle of one (CLI, dashboard) has not imported it
    import ash_core.models.vit_cifar  # noqa: F401

    name = arch[len(PREFIX):]
    if not timm.is_model(name):
        raise ModelError(f"the bundle's architecture {arch} is not a model of the installed "
                         f"timm {timm.__version__}; install the timm the bundle was made with.")
    kwargs = {k: _tupled(v) for k, v in (model_args or {}).items()}
    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except TypeError as exc:
        raise ModelError(f"timm cannot build {arch} with {kwargs}: {exc}.") from None


class VitTail(nn.Module):
    """Blocks N+1.., the final norm and ``forward_head`` of a ViT whose embedding side and
    earlier blocks are dropped (they are never run; a hybrid's CNN stem is not kept)."""

    def __init__(self, model: nn.Module, index: int):
        super().__init__()
        model.patch_embed = nn.Identity()
        model.blocks = model.blocks[index + 1:]
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        m = self.model
        return m.forward_head(m.norm(m.blocks(tokens)))


def build_tail(arch: str, layer: str, state: Mapping[str, np.ndarray],
               model_args: Mapping[str, Any] | None) -> nn.Module:
    """The tail of ``blocks.N`` of the recorded timm architecture (``tail_of``)."""
    return tail_of(create(arch, model_args), arch, layer, state)


def tail_of(model: nn.Module, arch: str, layer: str,
            state: Mapping[str, np.ndarray]) -> nn.Module:
    """The tail of ``blocks.N`` of ``model``, a freshly built ViT of the bundle's
    architecture (consumed), in eval mode with ``state`` loaded (every needed key and
    shape checked first)."""
    if not is_vit(model):
        raise ModelError(f"{arch} is not a timm VisionTransformer; only ViT blocks have a "
                         "tail here.")
    index = block_index(arch, model, layer)
    need = [k for k in model.state_dict() if _in_tail(k, index)]
    load_tail_weights(model, need, state, arch, layer)
    return VitTail(model.eval(), index).eval()
