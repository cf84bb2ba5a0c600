"""``--model hf:PATH``: a tiny randomly initialised ViT saved as a Hugging Face directory (model
and image processor) and loaded back offline; the hooked features are the classifier's input
(the CLS token after the final LayerNorm) and the stored head reproduces the logits."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

from ash_core import load_bundle
from ash_core.cli import main
from ash_core.extract import FeatureHook, ModelError, load_model


@pytest.fixture()
def hf_dir(tmp_path: Path) -> tuple[Path, ViTForImageClassification]:
    torch.manual_seed(3)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, image_size=32, patch_size=8, num_labels=3,
                       id2label={0: "ant", 1: "bee", 2: "cow"},
                       label2id={"ant": 0, "bee": 1, "cow": 2})
    net = ViTForImageClassification(config).eval()
    path = tmp_path / "vit-hf"
    net.save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}, resample=3,
                      image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.25, 0.3]).save_pretrained(path)
    return path, net


def test_hf_features_are_the_classifier_input_and_the_head_gives_its_logits(
        hf_dir: tuple[Path, ViTForImageClassification]) -> None:
    path, net = hf_dir
    lm = load_model(f"hf:{path}")
    assert lm.classes == ("ant", "bee", "cow")
    assert (lm.input_size, lm.interpolation, lm.mean, lm.std) == (
        32, "bicubic", (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    assert lm.notes["data_config"]["source"].startswith("ViTImageProcessor")
    assert lm.weights.endswith("model.safetensors") and lm.weights_sha256
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    hook = FeatureHook(lm.model, lm.head_layer, x)
    feats = hook(x)
    hook.remove()
    assert hook.head is lm.model.net.classifier
    with torch.no_grad():
        cls = net.vit(pixel_values=x).last_hidden_state[:, 0]  # CLS after the final norm
        logits = net(pixel_values=x).logits
    torch.testing.assert_close(feats, cls, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(feats @ hook.head.weight.T + hook.head.bias, logits,
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lm.model(x), logits)  # the wrapper returns plain logits


def test_extract_a_hf_model_end_to_end_and_evaluate(
        hf_dir: tuple[Path, ViTForImageClassification], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path, net = hf_dir
    rng = np.random.default_rng(0)
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            tmp_path / "imgs" / "a" / f"{i}.png")
    out = tmp_path / "bundle"
    assert main(["extract", "--model", f"hf:{path}", "--data-root", str(tmp_path),
                 "--id", "imgs=folder:imgs", "--ood", "noise=noise:gaussian?n=5",
                 "--batch-size", "4", "--workers", "0", "--feature-dtype", "float32",
                 "--device", "cpu", "--no-progress", "-o", str(out)]) == 0
    assert "preprocessing from ViTImageProcessor" in capsys.readouterr().out
    b = load_bundle(out)
    assert b.manifest["model"]["hf_class"] == "ViTForImageClassification"
    assert b.manifest["preprocessing"]["mean"] == [0.4, 0.5, 0.6]
    np.testing.assert_array_equal(b.head_weight.numpy(), net.classifier.weight.detach().numpy())
    img = np.asarray(Image.open(tmp_path / "imgs" / "a" / "0.png"), np.float32) / 255
    x = (torch.from_numpy(img).permute(2, 0, 1)[None]
         - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)) / torch.tensor(
        [0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    with torch.no_grad():
        want = net.vit(pixel_values=x).last_hidden_state[0, 0].numpy()
    np.testing.assert_allclose(np.asarray(b.split("imgs").features[0]), want, rtol=1e-4,
                               atol=1e-5)
    assert main(["evaluate", str(out), "--method", "ash-s", "--p", "65"]) == 0


def test_hf_errors_are_explained(hf_dir: tuple[Path, ViTForImageClassification],
                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = hf_dir
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_model(f"hf:{tmp_path / 'empty'}")
    with pytest.raises(ModelError, match="drop --weights"):
        load_model(f"hf:{path}", path / "model.safetensors")
    (path / "preprocessor_config.json").unlink()
    with pytest.raises(ModelError, match="cannot load .* offline"):
        load_model(f"hf:{path}")
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers fails
    with pytest.raises(ModelError, match=r"pip install 'ash-explorer\[hf\]'"):
        load_model(f"hf:{path}")
