"""Where to ASH on the demo hybrid ViT (``cifar10_vit_hybrid``'s network): the token maps of
its four blocks, extracted from real images by ``make layers``' own recipe
(``scripts/build_layer_bundles.py``, on a few rows), replayed through each block's tail at
p = 0, equal a full forward pass through the checkpoint.

Which checkpoint: the trained weights where ``weights/vit_hybrid_cifar10.safetensors`` exists
(``make bundles`` or ``scripts/train_vit_cifar.py`` wrote them; never committed); elsewhere (a
clean clone, CI) a network of the same architecture built offline: the stem at the public
ResNet-56 weights of ../shared/data, as in training, and the transformer drawn at random
(seeded) with weights large enough that every block changes the logits, so a tail that
skipped or repeated a block would not pass. The test prints which one it checked.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ash_core import load_bundle
from ash_core.extract import Extractor, extract, load_model
from ash_core.extract.data import PreparedDataset
from ash_core.layers import open_layers, replay_logits
from ash_core.models.vit_cifar import NAME as VIT_NAME

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
NAME = "cifar10_vit_hybrid"
TRAINED = REPO / "weights" / "vit_hybrid_cifar10.safetensors"
BLOCKS = [f"blocks.{i}" for i in range(4)]
CHECKED = ("cifar10_test", "mnist", "noise_uniform")  # ID, a far-OOD set, noise


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_checkpoint(shared_data: Path, out: Path) -> Path:
    """The architecture with the stem loaded as training loads it and every other parameter
    drawn at random (seed 0), larger than timm's initialisation (std 0.02), which leaves
    each block close to the identity."""
    train = _script("train_vit_cifar")
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


@pytest.fixture(scope="module")
def where(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """(layer bundle, checkpoint, which checkpoint) for a few rows of every split."""
    tmp = tmp_path_factory.mktemp("vit_where")
    which = "trained" if TRAINED.is_file() else "random"
    weights = TRAINED if which == "trained" else random_checkpoint(shared_data,
                                                                   tmp / "random.safetensors")
    build = _script("build_layer_bundles")
    cfg = build.layer_recipe(NAME, 25, 8, "cpu")
    assert cfg.layers == BLOCKS  # make layers caches every block of the ViT
    cfg = dataclasses.replace(cfg, out=str(tmp / f"{NAME}.layers"), weights=str(weights),
                              workers=0, progress=False)
    print(f"\nViT blocks replayed against the {which} checkpoint {weights}")
    return load_bundle(extract(cfg, log=lambda s: None)), Checkpoint(cfg), which


@pytest.mark.parametrize("split", CHECKED)
def test_every_blocks_tail_replays_the_checkpoints_forward(where, split):
    bundle, ckpt, which = where
    maps = open_layers(bundle)
    assert maps.names == [*BLOCKS, "penultimate"]
    assert maps.info("blocks.0").shape == (17, 128)  # class token + 16 patches, width 128
    plain = ckpt.logits(split)
    scale = float(plain.abs().max())
    assert scale > 1.0, "a checkpoint whose logits are all near zero checks little"
    feats = bundle.split(split).features_tensor()
    heads = feats @ bundle.head_weight.T + bundle.head_bias
    for index, layer in enumerate(BLOCKS):
        replayed = replay_logits(maps, layer, split)
        rounded = ckpt.logits(split, index, lambda i, t: t.half().float())
        # the forward with the block's output rounded as stored: float32 reordering only
        torch.testing.assert_close(replayed, rounded, atol=1e-4 * scale, rtol=1e-4)
        # the plain forward and the stored pre-logits through the head: float16 storage
        torch.testing.assert_close(replayed, plain, atol=2e-3 * scale, rtol=0)
        torch.testing.assert_close(replayed, heads, atol=2e-3 * scale, rtol=0)
        err = float((replayed - plain).abs().max()) / scale
        print(f"{which} {split} {layer}: max |replay - forward| = {100 * err:.4f}% of max |logit|")
    if which == "random" and split == CHECKED[0]:
        # every block matters in the random network: a forward that skips any one of them
        # moves the logits by 10 times the tolerance above or more
        for index in range(len(BLOCKS)):
            skipped = ckpt.logits(split, index, lambda i, t: i)
            assert float((skipped - plain).abs().max()) > 2e-2 * scale, index
