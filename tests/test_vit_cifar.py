"""The hybrid ViT of the cifar10_vit_hybrid bundle (``ash_core.models.vit_cifar``) and its
training script, offline and without its trained weights: the architecture builds through
``--model timm:NAME``, its hooked features are timm's pre-logits, its stem is the CIFAR
ResNet's first two stages, and the script trains on the recipe's id_fit only."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ash_core.extract import ExtractConfig, FeatureHook, load_model, parse_spec
from ash_core.models.architectures import CifarResNet

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "cifar10_vit_hybrid.json"
SPEC = "timm:vit_hybrid_r56s2_cifar10"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


def _script():
    spec = importlib.util.spec_from_file_location("train_vit_cifar",
                                                  REPO / "scripts" / "train_vit_cifar.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hooked(model: torch.nn.Module, head_layer: str, x: torch.Tensor) -> tuple:
    hook = FeatureHook(model, head_layer, x)
    try:
        feats = hook(x)
    finally:
        hook.remove()
    with torch.no_grad():
        pre_logits = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model(x)
    return feats, pre_logits, logits, hook.head


def test_the_architecture_builds_offline_and_its_hooked_features_are_the_pre_logits() -> None:
    lm = load_model(SPEC, random_init=True)
    model = lm.model
    assert lm.input_size == 32 and lm.mean == pytest.approx((0.485, 0.456, 0.406))
    assert lm.head_layer == "head:input"
    assert model.patch_embed.num_patches == 16 and model.cls_token is not None
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    feats, pre_logits, logits, head = _hooked(model, lm.head_layer, x)
    assert head is model.head and feats.shape == (6, model.embed_dim)
    torch.testing.assert_close(feats, pre_logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(feats @ head.weight.T + head.bias, logits, rtol=1e-5, atol=1e-5)
    # the class token after the final LayerNorm: zero mean and unit variance over its channels
    # before the affine part (ones and zeros at initialisation), so about half negative
    torch.testing.assert_close(feats.mean(1), torch.zeros(6), rtol=0, atol=1e-4)
    assert 0.3 < float((feats < 0).float().mean()) < 0.7


def test_the_stem_is_the_cifar_resnets_first_two_stages() -> None:
    script = _script()
    torch.manual_seed(3)
    resnet = CifarResNet(56).eval()
    for m in resnet.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    model = load_model(SPEC, random_init=True).model
    stem = model.patch_embed.backbone
    wanted = script.stem_keys(resnet.state_dict())
    assert set(wanted) == set(stem.state_dict())  # every stem key, no later stage
    stem.load_state_dict(wanted)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = resnet.layer2(resnet.layer1(torch.relu(resnet.bn1(resnet.conv1(x)))))
        torch.testing.assert_close(stem(x), expected)
    assert stem(x).shape == (2, 32, 16, 16)


def _fake_data(root: Path) -> Path:
    """cifar10/train and cifar10/test trees of tiny JPEGs and a random ResNet-56 checkpoint."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 1)):
        for name in CLASSES:
            folder = root / "cifar10" / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(img).save(folder / f"{i:04d}.jpg")
    weights = root / "weights" / "resnet_cifar10" / "resnet56-4bfd9763.th"
    weights.parent.mkdir(parents=True)
    state = {f"module.{k}": v for k, v in CifarResNet(56).state_dict().items()}
    torch.save({"state_dict": state}, weights)
    return root


def test_training_reads_the_recipes_id_fit_only(tmp_path: Path) -> None:
    script = _script()
    root = _fake_data(tmp_path / "data")
    cfg = ExtractConfig.from_json(RECIPE)
    by_role = {s.role: s.data for s in cfg.splits}
    assert script.recipe_specs() == {"id_fit": by_role["id_fit"], "id_val": by_role["id_val"]}
    # the same parts as every other CIFAR-10 recipe: id_val is the ResNets' id_val too
    other = {s.role: s.data for s in ExtractConfig.from_json(
        REPO / "configs" / "cifar10_resnet20.json").splits}
    assert (by_role["id_fit"], by_role["id_val"]) == (other["id_fit"], other["id_val"])

    out = tmp_path / "w" / "vit.safetensors"
    info = script.train(script.build_parser().parse_args(
        ["--data-root", str(root), "--out", str(out), "--epochs", "1", "--batch-size", "16",
         "--threads", "1"]))
    fit = parse_spec(by_role["id_fit"], root, (32, 32, 3)).sources()
    val = parse_spec(by_role["id_val"], root, (32, 32, 3)).sources()
    assert info["train_images"] == len(fit) == 36 and len(val) == 4
    # exactly the recipe's id_fit images, in its order: none of id_val, none of the test set
    assert info["train_sources_sha256"] == script.sources_sha256(fit)
    assert not set(fit) & set(val)
    assert not any(s.startswith("cifar10/test/") for s in fit + val)
    log = json.loads(out.with_suffix(".json").read_text())
    assert log == json.loads(json.dumps(info))
    assert log["seed"] == 0 and log["epochs"] == 1 and log["cpu"] and log["wall_s"] > 0
    # the written weights load through --model timm:NAME and carry the frozen stem
    lm = load_model(SPEC, out)
    stem_ckpt = script.stem_keys(script.read_state_dict(
        root / "weights" / "resnet_cifar10" / "resnet56-4bfd9763.th"))
    for key, value in stem_ckpt.items():
        torch.testing.assert_close(lm.model.patch_embed.backbone.state_dict()[key], value)
