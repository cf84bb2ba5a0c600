"""Extraction without ../shared/data: models, data specs, preprocessing, errors and the CLI,
on small generated images and randomly initialised models (nothing is downloaded)."""

from __future__ import annotations

import gzip
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ash_core import load_bundle
from ash_core.cli import build_parser, main
from ash_core.extract import (
    CifarResNet,
    DataError,
    ExtractConfig,
    ExtractError,
    FeatureHook,
    MnistCNN,
    ModelError,
    SplitSpec,
    extract,
    fit_linear_head,
    load_model,
    make_protocol,
    parse_spec,
    rename_mobilenet_v2_backbone,
)
from ash_core.extract.sources import read_idx


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


@pytest.fixture()
def image_root(tmp_path: Path) -> Path:
    """data/ with a class-subfolder set (2 classes, mixed sizes and modes), a flat set,
    IDX files and an npz."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for c, name in enumerate(["cat", "dog"]):
        (root / "pets" / name).mkdir(parents=True)
        for i in range(5):
            size = (40, 48) if i % 2 else (32, 32)
            arr = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            img = Image.fromarray(arr) if c == 0 else Image.fromarray(arr[:, :, 0])  # gray
            img.save(root / "pets" / name / f"{i:02d}.png")
    (root / "flat").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(
            root / "flat" / f"img{i}.jpg")
    (root / "idx").mkdir()
    _write_idx(root / "idx" / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (7, 28, 28)))
    _write_idx(root / "idx" / "t10k-labels-idx1-ubyte.gz", np.arange(7) % 3)
    np.savez(root / "set.npz", images=rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
             labels=np.arange(6))
    return root


# ------------------------------------------------------------------ models


@pytest.mark.parametrize("depth,blocks", [(20, 3), (32, 5), (44, 7), (56, 9)])
def test_cifar_resnets_have_the_published_layout(depth: int, blocks: int) -> None:
    model = CifarResNet(depth).eval()
    assert len(model.layer1) == blocks
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 64) and (feats >= 0).all()
        torch.testing.assert_close(model(x), model.linear(feats))
    # keys match the public checkpoints (no 'shortcut' parameters with option A)
    assert not any("shortcut" in k for k in model.state_dict())


def test_mnist_cnn_layout_matches_its_checkpoint_keys() -> None:
    keys = {k: tuple(v.shape) for k, v in MnistCNN().state_dict().items()}
    assert keys["fc_layers.0.weight"] == (256, 1152) and keys["conv_layers.6.weight"] == (
        128, 64, 3, 3)
    assert MnistCNN().forward_features(torch.zeros(1, 1, 28, 28)).shape == (1, 256)


def test_unknown_model_and_missing_weights_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown model 'resnet9000'.*torchvision"):
        load_model("resnet9000")
    with pytest.raises(ModelError, match="does not exist"):
        load_model("cifar_resnet20", tmp_path / "nope.th")
    bad = tmp_path / "wrong.pt"
    torch.save(CifarResNet(20).state_dict(), bad)
    with pytest.raises(ModelError, match="do not fit the model.*missing keys"):
        load_model("cifar_resnet56", bad)
    with pytest.raises(ModelError, match="no callable"):
        load_model("ash_core.extract.models:nothing_here")


def test_pickled_modules_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), p)  # a whole module: needs unpickling code
    with pytest.raises(ModelError, match="weights_only=True"):
        load_model("cifar_resnet20", p)


def test_torchvision_model_by_name_without_downloading(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))  # empty cache
    lm = load_model("resnet18", num_classes=7)  # weights=None: random init, nothing fetched
    assert lm.model.fc.out_features == 7 and lm.protocol == "imagenet"
    with pytest.raises(ModelError, match="--download"):
        load_model("resnet18", "IMAGENET1K_V1")  # not cached and not allowed: refuse
    with pytest.raises(ModelError, match="no torchvision weights 'NOPE'"):
        load_model("resnet18", "NOPE")
    hook = FeatureHook(lm.model, None, torch.zeros(1, 3, 64, 64))
    assert hook.name == "fc" and hook(torch.zeros(2, 3, 64, 64)).shape == (2, 512)


def test_user_model_from_module_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_models.py").write_text(
        "import torch.nn as nn\n"
        "def tiny():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(),"
        " nn.Linear(16, 4))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    lm = load_model("my_models:tiny")
    weights = tmp_path / "tiny.pt"
    torch.save(lm.model.state_dict(), weights)
    lm2 = load_model("my_models:tiny", weights)
    assert lm2.weights_sha256 and len(lm2.weights_sha256) == 64
    hook = FeatureHook(lm2.model, None, torch.zeros(1, 3, 8, 8))
    assert hook.name == "3" and hook(torch.ones(2, 3, 8, 8)).shape == (2, 16)
    sys.modules.pop("my_models", None)


def test_layer_not_found_lists_candidates_and_output_maps_are_pooled() -> None:
    model = CifarResNet(20).eval()
    with pytest.raises(ExtractError, match="layer 'layer9' not found.*candidates.*linear"):
        FeatureHook(model, "layer9", torch.zeros(1, 3, 32, 32))
    hook = FeatureHook(model, "layer2", torch.zeros(1, 3, 32, 32))
    assert hook(torch.zeros(3, 3, 32, 32)).shape == (3, 32) and hook.pooled
    assert hook.head is None  # layer2 does not feed the classifier
    no_linear = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    with pytest.raises(ExtractError, match="no nn.Linear.*--layer"):
        FeatureHook(no_linear, None, torch.zeros(1, 3, 8, 8))


def test_mobilenet_v2_key_renaming() -> None:
    sd = {"features.1.conv.3.weight": torch.zeros(1), "features.2.conv.6.weight": torch.zeros(1),
          "features.2.conv.4.bias": torch.zeros(1), "features.0.0.weight": torch.zeros(1)}
    assert sorted(rename_mobilenet_v2_backbone(sd)) == [
        "features.0.0.weight", "features.1.conv.1.weight", "features.2.conv.1.1.bias",
        "features.2.conv.2.weight"]


# ------------------------------------------------------------------ data


def test_folder_sources_sorted_with_labels_and_relative_paths(image_root: Path) -> None:
    src = parse_spec("folder:pets", image_root, (32, 32, 3))
    assert len(src) == 10 and src.class_names == ["cat", "dog"]
    assert list(src.labels()) == [0] * 5 + [1] * 5
    assert src.sources()[0] == "pets/cat/00.png"
    flat = parse_spec(str(image_root / "flat"), None, (32, 32, 3))  # bare path: auto-detected
    assert len(flat) == 3 and flat.labels() is None
    sub = parse_spec("folder:pets?every=2&limit=3", image_root, (32, 32, 3))
    assert sub.sources() == ["pets/cat/00.png", "pets/cat/02.png", "pets/cat/04.png"]


def test_arrays_noise_and_spec_errors(image_root: Path, tmp_path: Path) -> None:
    idx = parse_spec("idx:idx/t10k-images-idx3-ubyte.gz", image_root, (32, 32, 3))
    assert len(idx) == 7 and list(idx.labels()) == [0, 1, 2, 0, 1, 2, 0]
    assert read_idx(image_root / "idx" / "t10k-images-idx3-ubyte.gz").shape == (7, 28, 28)
    npz = parse_spec("npz:set.npz", image_root, (32, 32, 3))
    assert len(npz) == 6 and npz.sources()[1] == "set.npz#1"
    a = parse_spec("noise:gaussian?n=5&seed=1", None, (32, 32, 3))
    b = parse_spec("noise:gaussian?n=5&seed=1", None, (32, 32, 3))
    c = parse_spec("noise:uniform?n=5&seed=1", None, (28, 28, 1))
    np.testing.assert_array_equal(a.images, b.images)  # seeded: reproducible
    assert a.images.shape == (5, 32, 32, 3) and c.images.shape == (5, 28, 28)
    with pytest.raises(DataError, match="does not exist"):
        parse_spec("folder:missing", image_root, (32, 32, 3))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        parse_spec(str(tmp_path / "empty"), None, (32, 32, 3))
    with pytest.raises(DataError, match="unknown option"):
        parse_spec("noise:uniform?size=3", None, (32, 32, 3))
    with pytest.raises(DataError, match="gaussian' or 'uniform"):
        parse_spec("noise:pink", None, (32, 32, 3))
    # regressions: every=0 crashed with "slice step cannot be zero", limit=0 much later
    # with numpy's "need at least one array to concatenate"; negatives sliced silently
    for opt in ("limit=0", "every=0", "limit=-1", "every=-2"):
        with pytest.raises(DataError, match=f"option {opt.split('=')[0]} .* must be >= 1"):
            parse_spec(f"noise:uniform?n=5&{opt}", None, (32, 32, 3))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot read image"):
        parse_spec(str(tmp_path / "broken"), None, (32, 32, 3)).image(0)


def test_cifar_protocol_resizes_crops_and_replicates_gray() -> None:
    p = make_protocol("cifar", 32, 3, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    gray28 = np.full((28, 28), 200, np.uint8)
    assert p.to_uint8(gray28).shape == (32, 32, 3)  # MNIST: resize to 32, 3 channels
    wide = Image.new("RGB", (64, 48), (255, 0, 0))
    assert p.to_uint8(wide).shape == (32, 32, 3)  # shorter side 32, center crop
    same = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    np.testing.assert_array_equal(p.to_uint8(same), same)  # 32x32 inputs are untouched
    x = p.normalise(torch.from_numpy(p.to_uint8(gray28)))[0]
    assert x.shape == (3, 32, 32) and torch.allclose(x, torch.full_like(x, (200 / 255 - .5) / .5))
    m = make_protocol("mnist", 28, 1, (0.1307,), (0.3081,))
    assert m.to_uint8(Image.new("RGB", (28, 28))).shape == (28, 28, 1)
    assert make_protocol("imagenet", 224, 3, (0,) * 3, (1,) * 3).resize == 256


# ------------------------------------------------------------------ extraction + CLI


def _tiny_weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    p = tmp_path / "r20.th"
    torch.save({"state_dict": {f"module.{k}": v for k, v in CifarResNet(20).state_dict().items()}},
               p)
    return p


def test_extract_cli_end_to_end_and_evaluate(image_root: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle"
    rc = main(["extract", "--model", "cifar_resnet20", "--weights", str(_tiny_weights(tmp_path)),
               "--data-root", str(image_root), "--id", "pets=folder:pets",
               "--id-fit", "folder:pets", "--ood", "digits=idx:idx/t10k-images-idx3-ubyte.gz",
               "--ood", "noise=noise:uniform?n=9", "--thumbnails", "digits",
               "--group", "digits=near", "--group", "noise=far",
               "--batch-size", "4", "--workers", "0", "--no-progress", "-o", str(out)])
    assert rc == 0
    b = load_bundle(out)
    assert [s.name for s in b.splits] == ["pets", "id_fit", "digits", "noise"]
    assert b.groups == {"near": ("digits",), "far": ("noise",)}
    assert b.split("digits").thumbnails.shape == (7, 28, 28)
    assert b.split("noise").thumbnails.shape == (9, 32, 32, 3)  # noise: at input size
    assert b.split("pets").thumbnails is None
    assert b.manifest["data_root"] == str(image_root)
    assert b.manifest["preprocessing"]["protocol"] == "cifar"
    assert not out.with_name("bundle.partial").exists()
    assert main(["evaluate", str(out), "--method", "ash-s", "--p", "65"]) == 0
    assert "noise" in capsys.readouterr().out
    # an existing bundle is not overwritten without --overwrite
    assert main(["extract", "--model", "cifar_resnet20", "--id", "folder:pets",
                 "--data-root", str(image_root), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_cli_help_and_missing_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["extract", "--help"])
    text = capsys.readouterr().out
    assert "--config" in text and "noise:gaussian" in text and "torchrun" in text
    assert main(["extract", "--model", "cifar_resnet20"]) == 2
    assert "--out" in capsys.readouterr().err


def test_fit_head_and_head_mismatch(image_root: Path, tmp_path: Path) -> None:
    base = dict(model="cifar_resnet20", weights=str(_tiny_weights(tmp_path)),
                data_root=str(image_root), batch_size=4, workers=0, progress=False)
    with pytest.raises(ExtractError, match="needs an id_fit"):
        ExtractConfig(out=str(tmp_path / "x"), fit_head=True,
                      splits=[SplitSpec("a", "id", "folder:pets")], **base)
    with pytest.raises(ExtractError, match="does not feed a Linear head.*--fit-head"):
        extract(ExtractConfig(out=str(tmp_path / "y"), layer="layer2",
                              splits=[SplitSpec("a", "id", "folder:pets")], **base))
    path = extract(ExtractConfig(out=str(tmp_path / "z"), layer="layer2", fit_head=True,
                                 splits=[SplitSpec("a", "id", "folder:pets"),
                                         SplitSpec("f", "id_fit", "folder:pets")], **base))
    b = load_bundle(path)
    assert b.dim == 32 and b.classes == ["cat", "dog"]
    assert b.manifest["classifier"]["source"] == "fitted"
    x = np.array([[0, 1.0], [0, 2.0], [1.0, 0], [2.0, 0]])
    w, bias, acc = fit_linear_head(x, np.array([0, 0, 1, 1]), 2)
    assert acc == 1.0 and w.shape == (2, 2) and bias.shape == (2,)
    assert ((x @ w.T + bias).argmax(1) == [0, 0, 1, 1]).all()


def test_config_file_errors(tmp_path: Path) -> None:
    p = tmp_path / "c.json"
    p.write_text('{"out": "x", "model": "mnist_cnn", "splits": [], "colour": 1}')
    with pytest.raises(ExtractError, match="unknown key.*colour"):
        ExtractConfig.from_json(p)
    p.write_text('{"out": "x", "model": "mnist_cnn", "splits": []}')
    with pytest.raises(ExtractError, match="exactly one split with role 'id'"):
        ExtractConfig.from_json(p)
    with pytest.raises(ExtractError, match="role must be"):
        SplitSpec("a", "test", "noise:uniform")
    # regressions: these crashed with a TypeError / torch's ValueError traceback
    p.write_text("[1, 2]")
    with pytest.raises(ExtractError, match="must be a JSON object"):
        ExtractConfig.from_json(p)
    split = {"name": "id", "role": "id", "data": "noise:uniform"}
    for groups, words in (({"near": ["id"]}, "role 'id'"), ({"near": ["x"]}, "does not have"),
                          (["id"], "must be an object")):
        p.write_text(json.dumps({"out": "x", "model": "mnist_cnn", "splits": [split],
                                 "groups": groups}))
        with pytest.raises(ExtractError, match=f"groups: .*{words}"):
            ExtractConfig.from_json(p)
    for key, bad in (("workers", -1), ("batch_size", 0), ("batch_size", "256"),
                     ("chunk_batches", 1.5), ("crop", -32), ("resize", True)):
        p.write_text(json.dumps({"out": "x", "model": "mnist_cnn", "splits": [split], key: bad}))
        with pytest.raises(ExtractError, match=f"{key} must be an integer >= "):
            ExtractConfig.from_json(p)


def test_torchvision_datasets_are_never_downloaded_unasked(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="download=1"):
        parse_spec(f"torchvision:CIFAR10?root={tmp_path}&train=0", None, (32, 32, 3))
    assert not any(tmp_path.iterdir())  # nothing fetched
    with pytest.raises(DataError, match="no dataset 'NotADataset'"):
        parse_spec("torchvision:NotADataset", None, (32, 32, 3))


def _pets_args(image_root: Path, tmp_path: Path, out: Path) -> list[str]:
    return ["extract", "--model", "cifar_resnet20", "--weights", str(_tiny_weights(tmp_path)),
            "--data-root", str(image_root), "--id", "pets=folder:pets", "--batch-size", "4",
            "--workers", "0", "--no-progress", "--device", "cpu", "-o", str(out)]


def _tree(path: Path) -> list[tuple[str, bytes]]:
    return sorted((p.relative_to(path).as_posix(), p.read_bytes() if p.is_file() else b"")
                  for p in path.rglob("*"))


def test_overwrite_replaces_only_bundles_and_empty_dirs(image_root: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    # regression: `extract -o DIR --overwrite` deleted a folder with thesis.txt and sub/
    out = tmp_path / "thesis"
    (out / "sub").mkdir(parents=True)
    (out / "thesis.txt").write_text("four years of work")
    (out / "sub" / "data.csv").write_text("a,b\n")
    before = _tree(out)
    assert main([*_pets_args(image_root, tmp_path, out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "is not an ASH bundle" in err and "nothing was deleted" in err, err
    assert _tree(out) == before and not out.with_name("thesis.partial").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "r20.th", "thesis"]
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    assert main([*_pets_args(image_root, tmp_path, a_file), "--overwrite"]) == 2
    assert "not a directory" in capsys.readouterr().err and a_file.read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*_pets_args(image_root, tmp_path, empty), "--overwrite"]) == 0
    assert main([*_pets_args(image_root, tmp_path, empty), "--overwrite"]) == 0  # a bundle now
    assert len(load_bundle(empty).id_split) == 10


def test_a_work_dir_that_is_not_ours_is_never_touched(image_root: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # regression: a user folder named OUT.partial was filled with chunks, then deleted
    out = tmp_path / "b"
    work = tmp_path / "b.partial"
    work.mkdir()
    (work / "notes.md").write_text("mine")
    for args in ([], ["--overwrite"]):
        assert main([*_pets_args(image_root, tmp_path, out), *args]) == 2
        assert "not an extraction work directory" in capsys.readouterr().err
        assert _tree(work) == [("notes.md", b"mine")] and not out.exists()


def test_leftover_cleanup_removes_only_our_temporary_siblings(tmp_path: Path) -> None:
    from ash_core.extract.leftovers import clean_leftovers

    def make(name: str, *files: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        for f in files:
            (d / f).parent.mkdir(parents=True, exist_ok=True)
            (d / f).write_text("x")
        return d

    ours = [make(".b.partial.dead-1", "whatever.txt"), make(".b.partial.new-2"),
            make(".b.old-3", "manifest.json", "splits/id.csv", ".cube_cache/k"),
            make(".b.tmp-abc", "head.safetensors")]
    theirs = [make(".b.old-4", "thesis.txt"), make(".b.tmp-def", "head.safetensors", "notes"),
              make(".bb.old-5", "manifest.json"), make("b.old-6", "manifest.json")]
    (tmp_path / ".b.old-7").write_text("a file")
    assert sorted(clean_leftovers(tmp_path / "b")) == sorted(ours)
    assert all(p.exists() for p in theirs) and (tmp_path / ".b.old-7").is_file()
    assert not any(p.exists() for p in ours)
