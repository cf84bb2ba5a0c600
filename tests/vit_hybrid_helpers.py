"""The demo hybrid ViT's checkpoint in tests: the trained weights where they exist (git-ignored),
else a random network of the same architecture on the real ResNet-56 stem, and the
checkpoint's own forward pass on a recipe split's images as extraction prepares them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from safetensors.torch import save_file

from ash_core.extract import Extractor, load_model
from ash_core.extract.data import PreparedDataset
from ash_core.models.vit_cifar import NAME as VIT_NAME

REPO = Path(__file__).resolve().parents[1]
#: written by scripts/train_vit_cifar.py (make bundles); never committed
TRAINED = REPO / "weights" / "vit_hybrid_cifar10.safetensors"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_checkpoint(shared_data: Path, out: Path) -> Path:
    """The architecture with the stem loaded as training loads it and every other parameter
    drawn at random (seed 0), larger than timm's initialisation (std 0.02), which leaves
    each block close to the identity."""
    train = script("train_vit_cifar")
    model = load_model(f"timm:{VIT_NAME}", random_init=True).model
    stem = model.patch_embed.backbone
    stem.load_state_dict(train.stem_keys(train.read_state_dict(shared_data /
                                                               train.STEM_WEIGHTS)))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("patch_embed.backbone."):
                p.copy_(torch.randn(p.shape, generator=gen) * (0.15 if p.dim() > 1 else 0.3)
                        + (1.0 if name.endswith("norm1.weight") or name.endswith("norm2.weight")
                           or name == "norm.weight" else 0.0))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))
    return out


class Checkpoint:
    """The checkpoint's own forward pass on a split's images as extraction prepared them."""

    def __init__(self, cfg):
        self.cfg, self.model = cfg, load_model(cfg.model, cfg.weights).model
        self.extractor, self.images = Extractor(cfg, log=lambda s: None), {}

    def inputs(self, split: str) -> torch.Tensor:
        if split not in self.images:
            ex = self.extractor
            src = ex.source(next(s for s in self.cfg.splits if s.name == split))
            ds = PreparedDataset(src, ex.protocol, range(len(src)), False)
            self.images[split] = ex.protocol.normalise(torch.stack([ds[i][0]
                                                                    for i in range(len(ds))]))
        return self.images[split]

    def logits(self, split: str, index: int | None = None, fn=None) -> torch.Tensor:
        """Logits with block ``index``'s output replaced by ``fn(block input, output)``."""
        handle = None
        if fn is not None:
            handle = self.model.blocks[index].register_forward_hook(
                lambda m, i, out: fn(i[0], out))
        try:
            with torch.no_grad():
                return self.model(self.inputs(split))
        finally:
            if handle is not None:
                handle.remove()

    def pre_logits(self, split: str) -> torch.Tensor:
        """The model's own ``forward_head(..., pre_logits=True)``: the penultimate features."""
        with torch.no_grad():
            m = self.model
            return m.forward_head(m.forward_features(self.inputs(split)), pre_logits=True)
