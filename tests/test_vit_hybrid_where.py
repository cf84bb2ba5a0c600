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
from pathlib import Path

import pytest
import torch
from vit_hybrid_helpers import REPO, TRAINED, Checkpoint, random_checkpoint, script

from ash_core import load_bundle
from ash_core.extract import extract
from ash_core.layers import open_layers, replay_logits

pytestmark = pytest.mark.slow

NAME = "cifar10_vit_hybrid"
BLOCKS = [f"blocks.{i}" for i in range(4)]
CHECKED = ("cifar10_test", "mnist", "noise_uniform")  # ID, a far-OOD set, noise


@pytest.fixture(scope="module")
def where(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """(layer bundle, checkpoint, which checkpoint) for a few rows of every split."""
    tmp = tmp_path_factory.mktemp("vit_where")
    which = "trained" if TRAINED.is_file() else "random"
    weights = TRAINED if which == "trained" else random_checkpoint(shared_data,
                                                                   tmp / "random.safetensors")
    build = script("build_layer_bundles")
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


def test_make_layers_without_the_trained_weights_says_how_to_train_them(
        monkeypatch, tmp_path, capsys):
    build = script("build_layer_bundles")
    real = build.layer_recipe

    def absent(name, *args, **kwargs):  # the recipe as if weights/ were empty
        cfg = real(name, 10, 2, "cpu")
        cfg.weights = str(tmp_path / "absent.safetensors")
        cfg.out = str(tmp_path / f"{name}.layers")
        return cfg

    monkeypatch.setattr(build, "layer_recipe", absent)
    built = []
    monkeypatch.setattr("ash_core.extract.extract", lambda cfg, log: built.append(cfg.name))
    cubes = []  # make layers' cubes: ResNet-20's only (the extraction above is a stand-in)
    monkeypatch.setattr(build, "build_cubes", lambda path, **kw: cubes.append(path.name))
    assert build.main(["--only", NAME]) == 2  # asked for by name: an error
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {NAME}: its weights ")
    assert "python scripts/train_vit_cifar.py" in err[0] and not built
    assert build.main([]) == 0  # make layers: the ResNets, and a note for the ViT
    out = capsys.readouterr().out
    assert f"== skipping {NAME}: " in out and "`make layers`" in out
    assert built == ["cifar10_resnet20.layers", "cifar10_resnet56.layers"]
    assert cubes == ["cifar10_resnet20.layers"]


def test_a_fresh_process_replays_the_hybrids_blocks(where, capsys):
    """The CLI (and so the dashboard) replays the project's own registered architecture in a
    process that has not imported it: the tail is rebuilt from the bundle's name alone."""
    import subprocess
    import sys

    bundle, _, _ = where
    code = ("import sys; from ash_core.cli import main; sys.exit(main(['evaluate', "
            f"{str(bundle.root)!r}, '--layer', 'blocks.2', '--method', 'none', '--device', "
            "'cpu', '--format', 'json']))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr
    assert '"auroc"' in run.stdout
