"""The bundle format: round trips on real data, and every kind of bad input."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import reference as ref
import torch
from bundle_helpers import (
    edit_manifest,
    leftovers,
    rehash,
    small_head,
    small_splits,
    write_small,
)

import ash_core.bundle.publish as publish_mod
import ash_core.bundle.write as write_mod
from ash_core import Bundle, Setting, SplitData, evaluate, load_bundle, write_bundle
from ash_core.errors import BundleError

# --------------------------------------------------------------------------- helpers


def read_idx(path: Path, count: int) -> np.ndarray:
    """The first ``count`` items of a gzipped IDX file (big-endian header, uint8 data)."""
    with gzip.open(path, "rb") as fh:
        magic = fh.read(4)
        assert magic[:2] == b"\x00\x00" and magic[2] == 0x08, "IDX uint8 data expected"
        ndim = magic[3]
        dims = struct.unpack(f">{ndim}I", fh.read(4 * ndim))
        item = int(np.prod(dims[1:], dtype=np.int64)) if ndim > 1 else 1
        count = min(count, dims[0])
        data = np.frombuffer(fh.read(count * item), dtype=np.uint8)
    return data.reshape((count, *dims[1:]))


def relu_projection(images: np.ndarray, dim: int = 64, seed: int = 0) -> np.ndarray:
    """A fixed random ReLU layer on flattened pixels: post-ReLU features like a penultimate."""
    flat = images.reshape(images.shape[0], -1).astype(np.float32) / 255.0
    w = np.random.default_rng(seed).normal(0, 1 / np.sqrt(flat.shape[1]), (flat.shape[1], dim))
    return np.maximum(flat @ w.astype(np.float32), 0).astype(np.float32)


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def mnist(shared_data):
    images = read_idx(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz", 300)
    labels = read_idx(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz", 300).astype(np.int64)
    assert images.shape == (300, 28, 28) and labels.shape == (300,)
    assert labels.max() <= 9 and images.max() > 200  # real digits, not zeros
    fashion = read_idx(shared_data / "fashion-mnist" / "t10k-images-idx3-ubyte.gz", 150)
    return images, labels, fashion


@pytest.mark.parametrize("feature_dtype", ["float32", "float16"])
def test_round_trip_real_mnist(mnist, tmp_path, feature_dtype, no_unpickling):
    images, labels, fashion = mnist
    feats = relu_projection(images)
    ood = relu_projection(fashion)
    raw = images.reshape(300, -1).astype(np.float32) / 255.0  # the 784-d pixels too
    rng = np.random.default_rng(3)
    weight = rng.normal(size=(10, 64)).astype(np.float32)
    bias = rng.normal(size=10).astype(np.float32)
    meta = pd.DataFrame({"sample_id": [f"mnist-{i}" for i in range(200)],
                         "label": labels[:200], "source": "mnist/t10k"})
    splits = [
        SplitData("mnist_test", "id", feats[:200], labels[:200], meta=meta),
        SplitData("mnist_fit", "id_fit", feats[200:], labels[200:], info={"note": "held out"}),
        SplitData("fashion", "ood", ood),
    ]
    prov = {"model": {"name": "random-relu-64"}, "layer": {"name": "proj"}}
    path = write_bundle(tmp_path / "mnist", weight, bias, [str(i) for i in range(10)], splits,
                        prov, feature_dtype=feature_dtype)
    assert leftovers(tmp_path) == ["mnist"]  # no temp dir left behind
    b = load_bundle(path)
    assert isinstance(b, Bundle) and b.dim == 64 and b.classes == [str(i) for i in range(10)]
    assert [s.name for s in b.splits] == ["mnist_test", "mnist_fit", "fashion"]
    assert b.id_split.name == "mnist_test" and b.id_fit.name == "mnist_fit"
    assert [s.name for s in b.ood_splits] == ["fashion"]
    expected = {"mnist_test": feats[:200], "mnist_fit": feats[200:], "fashion": ood}
    for s in b.splits:
        stored = np.asarray(s.features)
        assert stored.dtype == np.dtype(feature_dtype)
        np.testing.assert_array_equal(stored, expected[s.name].astype(feature_dtype))
        assert len(s) == len(expected[s.name])
    np.testing.assert_array_equal(b.id_split.labels, labels[:200])
    np.testing.assert_array_equal(b.split("mnist_fit").labels, labels[200:])
    assert b.split("fashion").labels is None and b.split("fashion").labels_tensor() is None
    np.testing.assert_array_equal(b.head_weight.numpy(), weight)
    np.testing.assert_array_equal(b.head_bias.numpy(), bias)
    pd.testing.assert_frame_equal(b.id_split.meta, meta)
    assert list(b.split("fashion").meta.columns) == ["sample_id", "label", "source"]
    manifest = b.manifest
    assert manifest["format"] == "ash-bundle" and manifest["version"] == 1
    assert manifest["feature_dim"] == 64 and manifest["num_classes"] == 10
    assert manifest["model"] == prov["model"] and manifest["layer"] == prov["layer"]
    assert manifest["feature_dtype"] == feature_dtype
    assert manifest["splits"][1]["note"] == "held out"
    assert b.split("mnist_fit").info.extra == {"note": "held out"}
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((path / rel).read_bytes()).hexdigest() == digest

    # memory-mapped and read-only; features_tensor() is a writable, unshared fp32 copy
    mm = b.id_split.features
    assert isinstance(mm, np.memmap) and not mm.flags.writeable
    with pytest.raises(ValueError):
        mm[0, 0] = 1.0
    copy = b.id_split.features_tensor()
    assert copy.dtype == torch.float32
    copy[0, 0] = 1e6
    assert float(mm[0, 0]) != 1e6
    np.testing.assert_array_equal(b.id_split.features_tensor().numpy(),
                                  feats[:200].astype(feature_dtype).astype(np.float32))

    # the raw 784-d pixels round-trip too
    p2 = write_bundle(tmp_path / "pixels", np.ones((10, 784), np.float32), np.zeros(10),
                      list("0123456789"), [SplitData("px", "id", raw[:50], labels[:50])])
    np.testing.assert_array_equal(load_bundle(p2).id_split.features, raw[:50])


def test_evaluate_on_real_mnist_bundle(mnist, tmp_path):
    images, labels, fashion = mnist
    feats, ood = relu_projection(images), relu_projection(fashion)
    # a nearest-class-mean head: accuracy well above chance on real digits
    means = np.stack([feats[:200][labels[:200] == c].mean(0) for c in range(10)])
    weight = (2 * means).astype(np.float32)
    bias = -(means**2).sum(1).astype(np.float32)
    path = write_bundle(tmp_path / "m", weight, bias, list("0123456789"), [
        SplitData("mnist", "id", feats[:200], labels[:200]),
        SplitData("fit", "id_fit", feats[200:]),
        SplitData("fashion", "ood", ood),
    ])
    b = load_bundle(path)
    for method, p, threshold in [("ash-s", 65.0, "local"), ("ash-b", 80.0, "global"),
                                 ("react", 90.0, "local")]:
        r = evaluate(b, Setting(method, {"p": p}, threshold))
        assert r.id_accuracy["unshaped"] > 0.5
        # pinned against the independent reference on real features
        expected = ref.evaluate(feats[:200], {"fashion": ood}, weight, bias, method, p,
                                threshold, feats[200:], labels=labels[:200])
        np.testing.assert_allclose(r.id_scores, expected["id_scores"], rtol=1e-4, atol=1e-4)
        assert r.id_accuracy["shaped"] == pytest.approx(expected["acc"], abs=1 / 200)
        for k, v in expected["ood"]["fashion"].items():
            assert r.ood["fashion"][k] == pytest.approx(v, abs=1.5 / 150), (method, k)


# --------------------------------------------------------------------------- synthetic


def test_synthetic_bundle_structure(synthetic_bundle):
    b = load_bundle(synthetic_bundle)
    assert b.name == "synthetic" and b.dim == 32 and len(b.classes) == 5
    assert [(s.name, s.role, len(s)) for s in b.splits] == [
        ("id_test", "id", 400), ("id_train", "id_fit", 400), ("far", "ood", 300),
        ("near", "ood", 300)]
    assert [s.name for s in b.select_ood(["near"])] == ["near"]
    assert [s.name for s in b.select_ood(None)] == ["far", "near"]
    assert "dim=32" in repr(b) and "id_test" in repr(b.id_split)
    assert b.id_split.labels_tensor().dtype == torch.int64


def round_trip_inputs() -> tuple:
    """Head, features, labels, sidecar, thumbnails and splits with every role and option."""
    rng = np.random.default_rng(7)
    weight, bias = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=4)
    feats = {n: np.maximum(rng.normal(size=(k, 6)), 0) for n, k in
             [("t", 12), ("f", 9), ("v", 5), ("o", 7), ("ov", 3)]}
    labels = {"t": rng.integers(0, 4, 12), "f": rng.integers(0, 4, 9),
              "v": rng.integers(0, 4, 5), "o": np.full(7, -1)}
    meta = pd.DataFrame({"sample_id": [f"s{i}" for i in range(12)], "label": labels["t"],
                         "source": [f"img/{i}.png" for i in range(12)], "extra": 1.5})
    thumbs = rng.integers(0, 256, (7, 4, 4, 3), dtype=np.uint8)
    splits = [SplitData("t", "id", feats["t"], labels["t"], meta=meta),
              SplitData("f", "id_fit", feats["f"], labels["f"], info={"note": "fit"}),
              SplitData("v", "id_val", feats["v"], labels["v"]),
              SplitData("o", "ood", feats["o"], labels["o"], thumbnails=thumbs),
              SplitData("ov", "ood_val", feats["ov"])]
    return weight, bias, feats, labels, meta, thumbs, splits


PROV = {"model": {"name": "m", "layer": [1, 2]}, "extraction": {"seed": 3}}


@pytest.mark.parametrize("feature_dtype", ["float32", "float16"])
def test_round_trip_synthetic(tmp_path, feature_dtype, no_unpickling):
    """write -> load gives back every array, label, sidecar and manifest field (no real
    data needed, so this always runs)."""
    weight, bias, feats, labels, meta, thumbs, splits = round_trip_inputs()
    prov = PROV
    path = write_bundle(tmp_path / "rt", weight, bias, ["w", "x", "y", "z"], splits, prov,
                        feature_dtype=feature_dtype, name="round-trip")
    b = load_bundle(path)

    np.testing.assert_array_equal(b.head_weight.numpy(), weight)
    np.testing.assert_array_equal(b.head_bias.numpy(), bias.astype(np.float32))
    assert [(s.name, s.role, len(s)) for s in b.splits] == [
        (n, r, len(feats[n])) for n, r in [("t", "id"), ("f", "id_fit"), ("v", "id_val"),
                                            ("o", "ood"), ("ov", "ood_val")]]
    for s in b.splits:
        assert s.features.dtype == np.dtype(feature_dtype)
        np.testing.assert_array_equal(s.features, feats[s.name].astype(feature_dtype))
        if s.name in labels:
            assert s.labels.dtype == np.int64
            np.testing.assert_array_equal(s.labels, labels[s.name])
        else:
            assert s.labels is None
    pd.testing.assert_frame_equal(b.split("t").meta, meta)
    pd.testing.assert_frame_equal(b.split("v").meta, pd.DataFrame(
        {"sample_id": np.arange(5), "label": labels["v"], "source": ""}))
    assert list(b.split("ov").meta["label"]) == [-1] * 3
    np.testing.assert_array_equal(b.split("o").thumbnails, thumbs)
    assert b.split("t").thumbnails is None
    assert b.split("f").info.extra == {"note": "fit"}
    assert b.id_val.name == "v" and [s.name for s in b.ood_val_splits] == ["ov"]

    m = b.manifest
    assert {k: v for k, v in m.items() if k not in ("splits", "files")} == {
        "format": "ash-bundle", "version": 1, "name": "round-trip", "feature_dim": 6,
        "num_classes": 4, "classes": ["w", "x", "y", "z"], "head": {"file": "head.safetensors"},
        "feature_dtype": feature_dtype, **prov}
    assert m["splits"][1] == {"name": "f", "role": "id_fit", "file": "splits/f.safetensors",
                              "n": 9, "meta": "splits/f.csv", "note": "fit"}
    assert m["splits"][3]["thumbnails"] == "thumbs/o.safetensors"
    on_disk = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    assert sorted(m["files"]) == sorted(set(on_disk) - {"manifest.json"})
    for rel, digest in m["files"].items():
        assert hashlib.sha256((path / rel).read_bytes()).hexdigest() == digest


def test_content_hash_identifies_the_content(tmp_path):
    """The same bundle at another path has the same hash; one changed value another."""
    weight, bias, feats, labels, _, thumbs, splits = round_trip_inputs()

    def write(name):
        return load_bundle(write_bundle(tmp_path / name, weight, bias, "wxyz", splits, PROV,
                                        name="round-trip")).content_hash

    first = write("a")
    assert write("b") == first
    feats["o"][0, 0] += 1.0
    splits[3] = SplitData("o", "ood", feats["o"], labels["o"], thumbnails=thumbs)
    assert write("c") != first


def test_unknown_split_names(synthetic_bundle):
    b = load_bundle(synthetic_bundle)
    with pytest.raises(BundleError, match=r"no split named 'nope'.*available: id_test"):
        b.split("nope")
    with pytest.raises(BundleError, match=r"unknown OOD split\(s\) 'nope'.*available: far, near"):
        b.select_ood(["far", "nope"])
    with pytest.raises(BundleError, match="unknown OOD split"):
        b.select_ood(["id_test"])  # an ID split is not an OOD split


def test_fp16_and_bf16_tensors_are_accepted_by_the_writer(tmp_path):
    w, b = small_head()
    x = torch.rand(10, 8)
    path = write_bundle(tmp_path / "b", torch.from_numpy(w), torch.from_numpy(b), "abc",
                        [SplitData("i", "id", x.to(torch.bfloat16), torch.zeros(10))])
    np.testing.assert_array_equal(load_bundle(path).id_split.features,
                                  x.to(torch.bfloat16).float().numpy())


@pytest.mark.parametrize(("dtype", "match"), [
    (torch.bfloat16, "'features' is stored as BF16; allowed: F16, F32"),
    (torch.float64, "'features' is stored as F64; allowed: F16, F32"),
    (torch.float16, "stores features as float16 but the manifest says feature_dtype 'float32'"),
])
def test_features_in_another_dtype_than_declared_are_refused(tmp_path, dtype, match):
    """Regression: a BF16 file was read as fp16 bits (AUROC 1.0 from garbage), F64 and a
    dtype other than the manifest's feature_dtype were accepted silently."""
    from safetensors.torch import save_file as save_torch

    path = write_small(tmp_path / "b")
    x = (torch.rand(20, 8) * 4).to(dtype)
    save_torch({"features": x, "labels": torch.zeros(20, dtype=torch.int64)},
               str(path / "splits" / "id_test.safetensors"))
    rehash(path, "splits/id_test.safetensors")
    with pytest.raises(BundleError, match=match):
        load_bundle(path)


def test_float16_bundles_load_as_float16(tmp_path):
    path = write_small(tmp_path / "b", feature_dtype="float16")
    assert load_bundle(path).id_split.features.dtype == np.float16
    edit_manifest(path, lambda m: m.__setitem__("feature_dtype", "float32"))
    with pytest.raises(BundleError, match="stores features as float16 but the manifest says"):
        load_bundle(path)


# --------------------------------------------------------------------------- writer errors


@pytest.mark.parametrize(
    ("splits", "match"),
    [
        ([SplitData("i", "id", np.ones((5, 7), np.float32))], r"features must be \[N, 8\]"),
        ([SplitData("i", "id", np.ones(8, np.float32))], r"features must be \[N, 8\]"),
        ([SplitData("i", "id", np.full((5, 8), np.nan, np.float32))], "NaN/Inf"),
        ([SplitData("i", "id", np.full((5, 8), np.inf, np.float32))], "NaN/Inf"),
        ([SplitData("i", "id", np.ones((0, 8), np.float32))], "is empty"),
        ([SplitData("i", "id", np.ones((5, 8)), np.zeros(4))], "labels shape"),
        ([SplitData("i", "ood", np.ones((5, 8)))], "exactly one split with role 'id'"),
        ([SplitData("i", "id", np.ones((5, 8))), SplitData("j", "id", np.ones((5, 8)))],
         "exactly one split with role 'id'"),
        ([SplitData("i", "id", np.ones((5, 8))), SplitData("i", "ood", np.ones((5, 8)))],
         "unique"),
        ([SplitData("../escape", "id", np.ones((5, 8)))], "not allowed"),
        ([SplitData("i", "id", np.ones((5, 8))), SplitData("j", "test", np.ones((5, 8)))],
         "role must be one of"),
        ([SplitData("i", "id", np.ones((5, 8)), np.zeros(5), meta=pd.DataFrame({"a": [1]}))],
         "sidecar has 1 rows"),
        ([SplitData("i", "id", np.ones((5, 8)), np.zeros(5), thumbnails=np.zeros((4, 2, 2, 3)))],
         "4 thumbnails for 5 samples"),
        # a later split fails after earlier files were written
        ([*small_splits()[:2], SplitData("bad", "ood", np.full((3, 8), np.nan))], "NaN/Inf"),
    ],
)
def test_writer_rejects_bad_input_and_leaves_nothing(tmp_path, splits, match):
    parent = tmp_path / "out"
    with pytest.raises(BundleError, match=match):
        write_small(parent / "bundle", splits=splits)
    assert leftovers(parent) == []


@pytest.mark.parametrize(("feats", "dtype"), [
    (np.full((5, 8), 1e5, np.float32), "float16"),
    (np.full((5, 8), 1e39, np.float64), "float32"),
])
def test_writer_refuses_features_that_overflow_the_storage_dtype(tmp_path, feats, dtype):
    splits = [SplitData("i", "id", feats)]
    with pytest.raises(BundleError, match=rf"40 feature values exceed the {dtype} range"):
        write_small(tmp_path / "out" / "b", splits=splits, feature_dtype=dtype)
    assert leftovers(tmp_path / "out") == []


def test_writer_rejects_bad_heads(tmp_path):
    with pytest.raises(BundleError, match=r"head weight must be \[C, D\]"):
        write_bundle(tmp_path / "x", np.ones(8), np.ones(1), ["a"], small_splits())
    with pytest.raises(BundleError, match="2 class names for a head with 3 outputs"):
        write_bundle(tmp_path / "x", *small_head(), ["a", "b"], small_splits())
    with pytest.raises(BundleError, match="feature_dtype"):
        write_small(tmp_path / "x", feature_dtype="int8")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_writer_failing_mid_way_leaves_no_bundle_and_no_temp_dir(tmp_path, monkeypatch, exc):
    real = write_mod._save_arrays
    calls = []

    def flaky(path, arrays):
        calls.append(path)
        if len(calls) == 3:
            raise exc
        real(path, arrays)

    monkeypatch.setattr(write_mod, "_save_arrays", flaky)
    with pytest.raises(type(exc)):
        write_small(tmp_path / "bundle")
    assert len(calls) == 3
    assert leftovers(tmp_path) == []


def test_overwrite_is_atomic(tmp_path, monkeypatch):
    path = write_small(tmp_path / "bundle")
    with pytest.raises(BundleError, match="already exists.*overwrite=True"):
        write_small(path)
    before = (path / "manifest.json").read_text()

    def broken(path, arrays):
        raise OSError("disk full")

    monkeypatch.setattr(write_mod, "_save_arrays", broken)
    with pytest.raises(OSError):
        write_small(path, overwrite=True)
    assert (path / "manifest.json").read_text() == before  # old bundle intact
    assert leftovers(tmp_path) == ["bundle"]
    monkeypatch.undo()

    # failing at the final swap also keeps the old bundle in place
    real_replace = publish_mod.os.replace

    def replace(src, dst):
        if Path(src).name.startswith(".bundle.tmp-"):
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(publish_mod.os, "replace", replace)
    with pytest.raises(OSError, match="rename failed"):
        write_small(path, overwrite=True)
    monkeypatch.undo()
    assert (path / "manifest.json").read_text() == before
    assert leftovers(tmp_path) == ["bundle"]
    w, b = small_head()
    write_bundle(path, w * 2, b, "abc", small_splits(), overwrite=True)
    np.testing.assert_array_equal(load_bundle(path).head_weight.numpy(), w * 2)
    assert leftovers(tmp_path) == ["bundle"]
