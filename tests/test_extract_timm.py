"""``--model timm:NAME``: tiny randomly initialised timm models built offline, saved as state
dicts and loaded back through ``load_model``; the hooked features are timm's own pre-logits
and the stored head reproduces the model's logits. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from ash_core import load_bundle
from ash_core.bundle.safetensors_io import write_tensors
from ash_core.cli import build_parser, main
from ash_core.extract import (
    ExtractConfig,
    FeatureHook,
    ModelError,
    SplitSpec,
    extract,
    load_model,
    make_protocol,
)
from ash_core.extract.timm_models import parse_timm_spec

#: tiny variants of each family: (name, create_model arguments, input size)
TINY = {
    "resnet": ("resnet10t", {"num_classes": 4}, 32),
    "mobilenetv3": ("mobilenetv3_small_050", {"num_classes": 3}, 32),  # conv head in pre-logits
    "vit": ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, "depth": 2,
                                     "embed_dim": 32, "num_heads": 2, "num_classes": 5}, 32),
    "convnext": ("convnext_atto", {"depths": (1, 1, 1, 1), "dims": (8, 16, 24, 32),
                                   "num_classes": 3}, 32),
    "swin": ("swin_tiny_patch4_window7_224", {"img_size": 32, "patch_size": 2, "window_size": 4,
                                              "depths": (1, 1), "num_heads": (1, 2),
                                              "embed_dim": 16, "num_classes": 3}, 32),
}


def spec_of(name: str, kwargs: dict) -> str:
    args = "&".join(f"{k}={v!r}".replace(" ", "") for k, v in kwargs.items())
    return f"timm:{name}?{args}" if args else f"timm:{name}"


def saved(tmp_path: Path, family: str, seed: int = 1) -> tuple[str, Path, torch.nn.Module]:
    """(model spec, state-dict file, the original model) of a tiny family member."""
    name, kwargs, _ = TINY[family]
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    path = tmp_path / f"{family}.pth"
    torch.save(model.state_dict(), path)
    return spec_of(name, kwargs), path, model


@pytest.mark.parametrize("family", list(TINY))
def test_hooked_features_are_timm_pre_logits_and_the_head_gives_its_logits(
        tmp_path: Path, family: str) -> None:
    spec, path, original = saved(tmp_path, family)
    lm = load_model(spec, path)
    size = TINY[family][2]
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    hook = FeatureHook(lm.model, lm.head_layer, x)
    feats = hook(x)
    hook.remove()
    model = lm.model
    assert hook.head is model.get_classifier()
    with torch.no_grad():
        pre_logits = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model(x)
        own = original(x)
    assert feats.shape == pre_logits.shape == (3, hook.head.in_features)
    torch.testing.assert_close(feats, pre_logits, rtol=1e-5, atol=1e-6)
    head_logits = feats @ hook.head.weight.T + hook.head.bias
    torch.testing.assert_close(head_logits, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, own, rtol=1e-5, atol=1e-5)  # the weights were loaded
    assert lm.weights == str(path) and lm.weights_sha256
    assert lm.notes["family"] == "timm" and "pre-logits" in lm.notes["penultimate"]


def test_preprocessing_comes_from_resolve_data_config_and_is_recorded(tmp_path: Path) -> None:
    spec, path, _ = saved(tmp_path, "vit")
    lm = load_model(spec, path)
    cfg = lm.notes["data_config"]
    # img_size given at creation is the input size; the rest is the pretrained config's
    assert cfg["input_size"] == [3, 32, 32] and cfg["crop_pct"] == 0.9
    assert (lm.input_size, lm.resize, lm.interpolation) == (32, 35, "bicubic")  # floor(32/0.9)
    assert lm.mean == (0.5, 0.5, 0.5) and lm.std == (0.5, 0.5, 0.5)
    assert lm.protocol == "model" and lm.provenance()["input"]["interpolation"] == "bicubic"
    p = make_protocol(lm.protocol, lm.input_size, lm.channels, lm.mean, lm.std,
                      model_resize=lm.resize, interpolation=lm.interpolation)
    assert (p.resize, p.crop, p.interpolation) == (35, 32, "bicubic")
    assert p.describe()["interpolation"].startswith("bicubic")
    # a crop of another size scales the model's resize with it
    assert make_protocol("model", 32, 3, lm.mean, lm.std, crop=64,
                         model_resize=35).resize == 70
    # an image larger than the input is resized with the model's interpolation, then cropped
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8))
    want = img.resize((47, 35), Image.BICUBIC).crop((7, 1, 39, 33))
    np.testing.assert_array_equal(p.to_uint8(img), np.asarray(want))
    # a 1000-class model gets ImageNet's class names from timm's own tables
    resnet = load_model("timm:resnet10t", random_init=True)
    assert resnet.classes[:2] == ("tench", "goldfish") and len(resnet.classes) == 1000
    assert resnet.input_size == 224  # timm's test size, as its validate.py uses


def test_weights_from_safetensors_and_options_parsed_as_literals(tmp_path: Path) -> None:
    spec, _, original = saved(tmp_path, "convnext")
    path = tmp_path / "convnext.safetensors"
    write_tensors(path, {k: v.numpy() for k, v in original.state_dict().items()})
    lm = load_model(spec, path)
    for k, v in original.state_dict().items():
        torch.testing.assert_close(lm.model.state_dict()[k], v)
    name, kwargs = parse_timm_spec("timm:convnext_atto?depths=(1,1,1,1)&drop_rate=0.1&act=gelu")
    assert name == "convnext_atto"
    assert kwargs == {"depths": (1, 1, 1, 1), "drop_rate": 0.1, "act": "gelu"}


def test_missing_weights_random_init_and_unknown_names_are_explained(tmp_path: Path) -> None:
    name, kwargs, _ = TINY["vit"]
    with pytest.raises(ModelError, match="--weights FILE") as err:
        load_model(spec_of(name, kwargs))
    assert "--random-init" in str(err.value) and "never downloaded" in str(err.value)
    a = load_model(spec_of(name, kwargs), random_init=True)
    b = load_model(spec_of(name, kwargs), random_init=True)
    assert "random initialisation" in a.notes["warning"] and a.weights is None
    for k, v in a.model.state_dict().items():  # seeded: the same model in every run
        torch.testing.assert_close(b.model.state_dict()[k], v)
    with pytest.raises(ModelError, match="Did you mean vit_tiny_patch16_224"):
        load_model("timm:vit_tiny_patch16_22", random_init=True)
    with pytest.raises(ModelError, match="pretrained=False"):
        load_model("timm:resnet10t?pretrained=True")
    with pytest.raises(ModelError, match="must be a file"):
        load_model("timm:resnet10t", "DEFAULT")
    with pytest.raises(ModelError, match="cannot build"):
        load_model("timm:resnet10t?no_such_argument=1", random_init=True)


def test_weights_that_do_not_fit_name_the_keys(tmp_path: Path) -> None:
    spec, path, _ = saved(tmp_path, "vit")
    name, kwargs, _ = TINY["vit"]
    with pytest.raises(ModelError, match=r"shape mismatches \['head.weight"):
        load_model(spec_of(name, {**kwargs, "num_classes": 7}), path)
    _, cnn, _ = saved(tmp_path, "resnet")
    with pytest.raises(ModelError, match="missing keys .*unexpected keys") as err:
        load_model(spec, cnn)
    assert "cls_token" in str(err.value) and "conv1" in str(err.value)


@pytest.fixture()
def tiny_images(tmp_path: Path) -> Path:
    """data/pets: two classes of 4 RGB images, some at the input size, some larger."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for name in ("cat", "dog"):
        (root / "pets" / name).mkdir(parents=True)
        for i in range(4):
            size = (40, 48) if i % 2 else (32, 32)
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
                root / "pets" / name / f"{i:02d}.png")
    return root


def test_extract_a_timm_vit_end_to_end_and_evaluate(tiny_images: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    spec, path, original = saved(tmp_path, "vit")
    out = tmp_path / "bundle"
    rc = main(["extract", "--model", spec, "--weights", str(path),
               "--data-root", str(tiny_images), "--id", "pets=folder:pets",
               "--id-fit", "folder:pets", "--ood", "noise=noise:uniform?n=6",
               "--batch-size", "4", "--workers", "0", "--feature-dtype", "float32",
               "--device", "cpu", "--no-progress", "-o", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "preprocessing from timm.data.resolve_data_config" in printed
    assert "resize shorter side 35 (bicubic), center crop 32" in printed
    b = load_bundle(out)
    man = b.manifest
    assert man["model"]["data_config"]["crop_pct"] == 0.9
    assert man["model"]["name"] == spec and man["layer"]["name"] == "head"
    assert man["preprocessing"]["resize_shorter_side"] == 35
    assert man["preprocessing"]["interpolation"].startswith("bicubic")
    np.testing.assert_array_equal(b.head_weight.numpy(), original.head.weight.detach().numpy())
    # the first ID image (32x32: used as it is) through the model gives the stored features
    img = np.asarray(Image.open(tiny_images / "pets" / "cat" / "00.png"), np.float32) / 255
    x = (torch.from_numpy(img).permute(2, 0, 1)[None] - 0.5) / 0.5
    with torch.no_grad():
        want = original.forward_head(original.forward_features(x), pre_logits=True)
    np.testing.assert_allclose(np.asarray(b.split("pets").features[0]), want[0].numpy(),
                               rtol=1e-4, atol=1e-5)
    assert main(["evaluate", str(out), "--method", "ash-s", "--p", "65"]) == 0
    assert "noise" in capsys.readouterr().out


def test_extract_help_documents_both_prefixes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["extract", "--help"])
    text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")  # wrapped hyphens
    assert "timm:NAME" in text and "hf:PATH" in text and "--random-init" in text
    assert "pre-logits" in text and "resolve_data_config" in text


def test_a_timm_backbone_without_classifier_gets_its_pre_logits_and_a_fitted_head(
        tiny_images: Path, tmp_path: Path) -> None:
    name, kwargs, _ = TINY["vit"]
    torch.manual_seed(2)
    backbone = timm.create_model(name, pretrained=False, **{**kwargs, "num_classes": 0}).eval()
    path = tmp_path / "backbone.pth"
    torch.save(backbone.state_dict(), path)
    out = tmp_path / "fitted"
    extract(ExtractConfig(
        out=str(out), model=spec_of(name, {**kwargs, "num_classes": 0}), weights=str(path),
        data_root=str(tiny_images), fit_head=True, batch_size=4, workers=0, progress=False,
        device="cpu", feature_dtype="float32",
        splits=[SplitSpec("pets", "id", "folder:pets"), SplitSpec("fit", "id_fit", "folder:pets")]),
        log=lambda s: None)
    b = load_bundle(out)
    # the classifier is an Identity: its input is still the pre-logits (D = 32), not the
    # output of the last Linear inside the blocks
    assert b.manifest["layer"]["name"] == "head" and b.split("pets").features.shape == (8, 32)
    assert b.manifest["classifier"]["source"] == "fitted"


def test_checkpoints_timm_converts_itself_go_through_its_checkpoint_filter(
        tmp_path: Path) -> None:
    # ViT weights at 32 px into the same ViT at 48 px: only timm's checkpoint_filter_fn
    # (which resamples the position embedding) makes them fit
    spec, path, original = saved(tmp_path, "vit")
    name, kwargs, _ = TINY["vit"]
    lm = load_model(spec_of(name, {**kwargs, "img_size": 48}), path)
    assert "checkpoint_filter_fn" in lm.notes["weights_layout"] and lm.input_size == 48
    torch.testing.assert_close(lm.model.head.weight, original.head.weight)
    assert lm.model.pos_embed.shape[1] == 1 + 6 * 6
