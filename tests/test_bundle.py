"""The bundle format: round trips on real data, and every kind of bad input."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import shutil
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
    raw_safetensors,
    rehash,
    small_head,
    small_splits,
    write_small,
)
from conftest import make_synthetic_bundle
from safetensors.numpy import save_file

import ash_core.bundle.publish as publish_mod
import ash_core.bundle.write as write_mod
from ash_core import Bundle, SplitData, evaluate, load_bundle, write_bundle
from ash_core.errors import BundleError, FeatureError

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


@pytest.fixture
def no_unpickling(monkeypatch):
    """Make any attempt to unpickle fail loudly: the loader must never need it."""

    def forbidden(*args, **kwargs):
        raise AssertionError("ash_core tried to unpickle a file")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)


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
        r = evaluate(b, method, p, threshold)
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


@pytest.mark.parametrize("feature_dtype", ["float32", "float16"])
def test_round_trip_synthetic(tmp_path, feature_dtype, no_unpickling):
    """write -> load gives back every array, label, sidecar and manifest field (no real
    data needed, so this always runs)."""
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
    prov = {"model": {"name": "m", "layer": [1, 2]}, "extraction": {"seed": 3}}
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

    # the content hash identifies the content: the same bundle elsewhere has the same
    # one, one changed feature value gives another
    same = write_bundle(tmp_path / "copy", weight, bias, ["w", "x", "y", "z"], splits, prov,
                        feature_dtype=feature_dtype, name="round-trip")
    assert load_bundle(same).content_hash == b.content_hash
    feats["o"][0, 0] += 1.0
    splits[3] = SplitData("o", "ood", feats["o"], labels["o"], thumbnails=thumbs)
    other = write_bundle(tmp_path / "other", weight, bias, ["w", "x", "y", "z"], splits, prov,
                         feature_dtype=feature_dtype, name="round-trip")
    assert load_bundle(other).content_hash != b.content_hash


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


# --------------------------------------------------------------------------- loader errors


def test_missing_and_non_bundle_paths(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(tmp_path / "empty")
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(BundleError, match="is a file; a bundle is a directory"):
        load_bundle(tmp_path / "file.txt")


@pytest.mark.parametrize("kind", ["pickle", "torch.save", "pickle-protocol-2"])
def test_pickle_offered_as_a_bundle_is_refused_without_loading(tmp_path, kind, no_unpickling):
    target = tmp_path / "features.pt"
    payload = {"features": np.ones((3, 4)), "labels": [0, 1, 2]}
    if kind == "pickle":
        target.write_bytes(pickle.dumps(payload))
    elif kind == "pickle-protocol-2":
        target.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save({"features": torch.ones(3, 4)}, target)
    with pytest.raises(BundleError, match=r"pickle/torch\.save file.*never unpickles"):
        load_bundle(target)


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_pickle_inside_a_bundle_is_refused(tmp_path, kind, no_unpickling):
    path = write_small(tmp_path / "b")
    target = path / "splits" / "id_test.safetensors"
    if kind == "pickle":
        target.write_bytes(pickle.dumps({"features": np.ones((20, 8))}))
    else:
        target.unlink()
        torch.save({"features": torch.ones(20, 8)}, target)
    for verify in (True, False):  # refused by its magic, before anyone hashes it
        with pytest.raises(BundleError, match=r"pickle/torch\.save file, not safetensors"):
            load_bundle(path, verify=verify)


def test_truncated_safetensors(tmp_path):
    path = write_small(tmp_path / "b")
    target = path / "splits" / "ood_a.safetensors"
    data = target.read_bytes()
    target.write_bytes(data[:-10])
    with pytest.raises(BundleError, match="truncated: its header describes 640 data bytes"):
        load_bundle(path)  # the size is checked before the sha256
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(path, verify=False)
    target.write_bytes(data[:40])  # inside the header
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(path, verify=False)
    target.write_bytes(data[:5])
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(path, verify=False)
    target.write_bytes(b"")
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(path, verify=False)


def test_tampered_safetensors(tmp_path):
    path = write_small(tmp_path / "b")
    target = path / "splits" / "id_test.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF  # flip bits of one feature value
    target.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the sha256.*modified or corrupted"):
        load_bundle(path)
    # appended bytes
    target.write_bytes(bytes(data) + b"\x00" * 16)
    with pytest.raises(BundleError, match="bytes after the last tensor"):
        load_bundle(path, verify=False)
    # a header that lies about the shape
    feats = np.ones((20, 8), np.float32).tobytes()
    raw_safetensors(target, {"features": {"dtype": "F32", "shape": [20, 9],
                                          "data_offsets": [0, len(feats)]}}, feats)
    with pytest.raises(BundleError, match="does not match its declared size"):
        load_bundle(path, verify=False)
    # overlapping / out-of-order offsets
    raw_safetensors(target, {"features": {"dtype": "F32", "shape": [20, 8],
                                          "data_offsets": [8, len(feats) + 8]}}, feats + bytes(8))
    with pytest.raises(BundleError, match="does not match its declared size"):
        load_bundle(path, verify=False)
    # unknown dtype
    raw_safetensors(target, {"features": {"dtype": "C64", "shape": [20, 8],
                                          "data_offsets": [0, len(feats)]}}, feats)
    with pytest.raises(BundleError, match="unsupported or corrupt entry"):
        load_bundle(path, verify=False)
    # a header entry that is not an object
    raw_safetensors(target, {"features": 5}, feats)
    with pytest.raises(BundleError, match="corrupt"):
        load_bundle(path, verify=False)
    # a header that is not JSON
    target.write_bytes(struct.pack("<Q", 4) + b"{{{{" + feats)
    with pytest.raises(BundleError, match="corrupt safetensors header"):
        load_bundle(path, verify=False)


def test_tampered_split_with_a_valid_hash_still_checks_shapes(tmp_path):
    path = write_small(tmp_path / "b")
    save_file({"features": np.ones((20, 5), np.float32)}, str(path / "splits/ood_a.safetensors"))
    rehash(path, "splits/ood_a.safetensors")
    with pytest.raises(BundleError, match="feature dimension 5 but the head expects 8"):
        load_bundle(path)
    save_file({"features": np.ones((7, 8), np.float32)}, str(path / "splits/ood_a.safetensors"))
    rehash(path, "splits/ood_a.safetensors")
    with pytest.raises(BundleError, match="declares n=20 but holds 7"):
        load_bundle(path)
    save_file({"x": np.ones((20, 8), np.float32)}, str(path / "splits/ood_a.safetensors"))
    rehash(path, "splits/ood_a.safetensors")
    with pytest.raises(BundleError, match="holds a tensor named 'x'; expected only 'features'"):
        load_bundle(path)
    save_file({"labels": np.zeros(20, np.int64)}, str(path / "splits/ood_a.safetensors"))
    rehash(path, "splits/ood_a.safetensors")
    with pytest.raises(BundleError, match="must hold 'features'"):
        load_bundle(path)
    save_file({"weight": np.ones((3, 8), np.float32), "bias": np.ones(2, np.float32)},
              str(path / "head.safetensors"))
    rehash(path, "head.safetensors")
    with pytest.raises(BundleError, match=r"head weight must be \[C, D\]"):
        load_bundle(path)


@pytest.mark.parametrize("field", ["file", "meta", "thumbnails", "head"])
@pytest.mark.parametrize("rel", ["../outside.safetensors", "splits/../../outside.safetensors"])
def test_manifest_paths_escaping_the_bundle_are_refused(tmp_path, field, rel):
    path = write_small(tmp_path / "b")
    shutil.copy(path / "splits" / "ood_a.safetensors", tmp_path / "outside.safetensors")

    def escape(m):
        if field == "head":
            m["head"]["file"] = rel
        else:
            m["splits"][2][field] = rel

    edit_manifest(path, escape)
    with pytest.raises(BundleError, match="escapes the bundle directory"):
        load_bundle(path, verify=False)


def test_absolute_and_symlinked_manifest_paths_are_refused(tmp_path):
    path = write_small(tmp_path / "b")
    outside = tmp_path / "outside.safetensors"
    shutil.copy(path / "splits" / "ood_a.safetensors", outside)
    edit_manifest(path, lambda m: m["splits"][2].__setitem__("file", str(outside)))
    with pytest.raises(BundleError, match="is absolute"):
        load_bundle(path, verify=False)
    edit_manifest(path, lambda m: m["splits"][2].__setitem__("file", "splits/link.safetensors"))
    (path / "splits" / "link.safetensors").symlink_to(outside)
    with pytest.raises(BundleError, match="escapes the bundle directory"):
        load_bundle(path, verify=False)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.__setitem__("format", "other"), "not an ASH bundle manifest"),
        (lambda m: m.__setitem__("version", 99), "version 99 is not supported"),
        (lambda m: m.pop("classes"), "lacks the required key 'classes'"),
        (lambda m: m.__setitem__("splits", []), "non-empty list"),
        (lambda m: m["splits"][1].__setitem__("role", "id"), "exactly one split with role 'id'"),
        (lambda m: m["splits"][1].__setitem__("role", "train"), "role must be one of .* 'train'"),
        (lambda m: m["splits"][1].__setitem__("name", "id_test"), "unique; repeated: id_test"),
        (lambda m: m["splits"][1].pop("file"), "lacks the key 'file'"),
        (lambda m: (m["splits"][1].__setitem__("file", "splits/gone.safetensors"),
                    m["files"].__setitem__("splits/gone.safetensors", "0" * 64)), "is missing"),
        (lambda m: (m["splits"][1].__setitem__("meta", "splits/gone.csv"),
                    m["files"].__setitem__("splits/gone.csv", "0" * 64)), "is missing"),
        (lambda m: m.__setitem__("classes", ["a"]), "1 class names but the head has 3"),
        (lambda m: m["splits"][1].__setitem__("file", ""), "non-empty relative path"),
        (lambda m: m["splits"][1].__setitem__("n", "many"), "'n' must be a non-negative integer"),
        (lambda m: m["splits"][1].__setitem__("n", None), "'n' must be a non-negative integer"),
        (lambda m: m["splits"][1].__setitem__("n", -3), "'n' must be a non-negative integer"),
        (lambda m: m["splits"][1].__setitem__("file", 7), "non-empty relative path"),
        (lambda m: m.__setitem__("head", "head.safetensors"), "\"head\" must be an object"),
        (lambda m: m.__setitem__("head", {}), "\"head\" must be an object"),
        (lambda m: m.__setitem__("classes", "abc"), "\"classes\" must be a list"),
        (lambda m: m["splits"].append("oops"), "every split entry must be an object"),
        # regression: a list crashed verification with a TypeError, and a string made
        # `rel in hashes` a substring test that silently skipped every sha256 check
        (lambda m: m.__setitem__("files", list(m["files"])), "\"files\" must be an object"),
        (lambda m: m.__setitem__("files", "abc"), "\"files\" must be an object"),
        (lambda m: m["files"].__setitem__("head.safetensors", 1), "\"files\" must be an object"),
    ],
)
def test_malformed_manifests(tmp_path, edit, match):
    path = write_small(tmp_path / "b")
    edit_manifest(path, edit)
    with pytest.raises(BundleError, match=match):
        load_bundle(path)


def test_manifest_that_is_not_json(tmp_path):
    path = write_small(tmp_path / "b")
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="corrupt manifest: not valid UTF-8 JSON"):
        load_bundle(path)


def test_tampered_sidecar_is_detected(tmp_path):
    path = write_small(tmp_path / "b")
    with open(path / "splits" / "id_test.csv", "a") as fh:
        fh.write("99,1,evil\n")
    with pytest.raises(BundleError, match="id_test.csv does not match the sha256"):
        load_bundle(path)


# --------------------------------------------------------------------------- data problems


def write_unchecked_split(path: Path, name: str, feats: np.ndarray) -> None:
    """Replace a split's features behind the writer's back (as a broken extractor might)."""
    save_file({"features": feats}, str(path / "splits" / f"{name}.safetensors"))
    rehash(path, f"splits/{name}.safetensors")
    edit_manifest(path, lambda m: [s.__setitem__("n", len(feats)) for s in m["splits"]
                                   if s["name"] == name])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_features_in_a_loaded_bundle(tmp_path, bad):
    path = write_small(tmp_path / "b")
    feats = np.ones((20, 8), np.float32)
    feats[3, 4] = bad
    write_unchecked_split(path, "ood_a", feats)
    (path / "splits" / "ood_a.csv").unlink()
    edit_manifest(path, lambda m: m["splits"][2].pop("meta"))
    with pytest.raises(FeatureError, match=r"split 'ood_a' has 1 NaN/Inf feature values.*re-extract"):
        evaluate(load_bundle(path), "ash-s", 65)


def test_empty_split_in_a_loaded_bundle(tmp_path):
    path = write_small(tmp_path / "b")
    write_unchecked_split(path, "ood_a", np.ones((0, 8), np.float32))
    (path / "splits" / "ood_a.csv").unlink()
    edit_manifest(path, lambda m: m["splits"][2].pop("meta"))
    b = load_bundle(path)
    assert len(b.split("ood_a")) == 0
    with pytest.raises(FeatureError, match="split 'ood_a' has no samples"):
        evaluate(b, "ash-p", 65)


def test_negative_activations_warn_and_still_compute(tmp_path):
    splits = small_splits()
    splits[0] = SplitData("id_test", "id", splits[0].features - 0.25, splits[0].labels)
    path = write_small(tmp_path / "b", splits=splits)
    frac = float((np.asarray(splits[0].features, dtype=np.float32) < 0).mean())
    assert 0 < frac < 1
    with pytest.warns(UserWarning, match=rf"split 'id_test': {100 * frac:.1f}% of activations "
                                         "are negative") as record:
        r = evaluate(load_bundle(path), "ash-s", 65)
    # computed on the negative features as stored (not clipped), as the reference does
    w, b = small_head()
    expected = ref.evaluate(np.asarray(splits[0].features, np.float32),
                            {"ood_a": np.asarray(splits[2].features, np.float32)}, w, b,
                            "ash-s", 65.0)
    for metric, value in expected["ood"]["ood_a"].items():
        assert r.ood["ood_a"][metric] == pytest.approx(value, abs=1e-6), metric
    assert sum("negative" in str(w.message) for w in record) == 1  # only the split that is


def test_writer_can_regenerate_a_synthetic_bundle(tmp_path):
    path = make_synthetic_bundle(tmp_path / "s", n_id=50, n_ood=20, dim=6, classes=3)
    b = load_bundle(path)
    assert b.dim == 6 and len(b.id_split) == 50 and len(b.split("far")) == 20


def test_tampered_or_misshapen_thumbnails_are_refused_when_read(tmp_path):
    """Regression: thumbnails are read lazily and were never checked against their sha256
    (nor their count against the split's), unlike every other file of the bundle."""
    from safetensors.numpy import save_file

    splits = small_splits()
    splits[2] = SplitData("ood_a", "ood", splits[2].features,
                          thumbnails=np.zeros((20, 4, 4), np.uint8))
    path = write_small(tmp_path / "b", splits=splits)
    assert load_bundle(path).split("ood_a").thumbnails.shape == (20, 4, 4)
    save_file({"images": np.full((20, 4, 4), 7, np.uint8)}, str(path / "thumbs/ood_a.safetensors"))
    with pytest.raises(BundleError, match="thumbs/ood_a.safetensors does not match the sha256"):
        _ = load_bundle(path).split("ood_a").thumbnails
    assert load_bundle(path, verify=False).split("ood_a").thumbnails[0, 0, 0] == 7
    save_file({"images": np.zeros((3, 4, 4), np.uint8)}, str(path / "thumbs/ood_a.safetensors"))
    with pytest.raises(BundleError, match=r"expected \[20, H, W\]"):
        _ = load_bundle(path, verify=False).split("ood_a").thumbnails
