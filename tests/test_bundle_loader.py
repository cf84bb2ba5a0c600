"""The bundle loader on bad input: missing paths, pickles, truncated or tampered files,
escaping paths, malformed manifests, bad data in a loaded bundle."""

from __future__ import annotations

import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import reference as ref
import torch
from bundle_helpers import (
    edit_manifest,
    raw_safetensors,
    rehash,
    small_head,
    small_splits,
    write_small,
)
from conftest import make_synthetic_bundle
from safetensors.numpy import save_file

from ash_core import Setting, SplitData, evaluate, load_bundle
from ash_core.errors import BundleError, FeatureError

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
        (lambda m: m.__setitem__("splits", []), "splits must be a list of at least one"),
        (lambda m: m["splits"][1].__setitem__("role", "id"), "exactly one split with role 'id'"),
        (lambda m: m["splits"][1].__setitem__("role", "train"), "role must be one of .* 'train'"),
        (lambda m: m["splits"][1].__setitem__("name", "id_test"), "unique; repeated: id_test"),
        (lambda m: m["splits"][1].pop("file"), "lacks the required key 'file' in splits\\[1\\]"),
        (lambda m: (m["splits"][1].__setitem__("file", "splits/gone.safetensors"),
                    m["files"].__setitem__("splits/gone.safetensors", "0" * 64)), "is missing"),
        (lambda m: (m["splits"][1].__setitem__("meta", "splits/gone.csv"),
                    m["files"].__setitem__("splits/gone.csv", "0" * 64)), "is missing"),
        (lambda m: m.__setitem__("classes", ["a"]), "1 class names but the head has 3"),
        (lambda m: m["splits"][1].__setitem__("file", ""), "file must be a non-empty path relative"),
        (lambda m: m["splits"][1].__setitem__("n", "many"), r"splits\[1\] \('id_train'\)\.n must be an integer from 0"),
        (lambda m: m["splits"][1].__setitem__("n", None), r"splits\[1\] \('id_train'\)\.n must be an integer from 0"),
        (lambda m: m["splits"][1].__setitem__("n", -3), r"splits\[1\] \('id_train'\)\.n must be an integer from 0"),
        (lambda m: m["splits"][1].__setitem__("file", 7), "file must be a non-empty path relative"),
        (lambda m: m.__setitem__("head", "head.safetensors"), "field head must be an object"),
        (lambda m: m.__setitem__("head", {}), "lacks the required key 'file' in head"),
        (lambda m: m.__setitem__("classes", "abc"), "field classes must be a list"),
        (lambda m: m["splits"].append("oops"), r"splits\[3\] must be an object"),
        # regression: a list crashed verification with a TypeError, and a string made
        # `rel in hashes` a substring test that silently skipped every sha256 check
        (lambda m: m.__setitem__("files", list(m["files"])), "files must be an object|files.head.safetensors must be a sha256"),
        (lambda m: m.__setitem__("files", "abc"), "files must be an object|files.head.safetensors must be a sha256"),
        (lambda m: m["files"].__setitem__("head.safetensors", 1), "files must be an object|files.head.safetensors must be a sha256"),
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
    with pytest.raises(BundleError, match="corrupt manifest: not valid JSON"):
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
        evaluate(load_bundle(path), Setting("ash-s", {"p": 65}))


def test_empty_split_in_a_loaded_bundle(tmp_path):
    path = write_small(tmp_path / "b")
    write_unchecked_split(path, "ood_a", np.ones((0, 8), np.float32))
    (path / "splits" / "ood_a.csv").unlink()
    edit_manifest(path, lambda m: m["splits"][2].pop("meta"))
    b = load_bundle(path)
    assert len(b.split("ood_a")) == 0
    with pytest.raises(FeatureError, match="split 'ood_a' has no samples"):
        evaluate(b, Setting("ash-p", {"p": 65}))


def test_negative_activations_warn_and_still_compute(tmp_path):
    splits = small_splits()
    splits[0] = SplitData("id_test", "id", splits[0].features - 0.25, splits[0].labels)
    path = write_small(tmp_path / "b", splits=splits)
    frac = float((np.asarray(splits[0].features, dtype=np.float32) < 0).mean())
    assert 0 < frac < 1
    with pytest.warns(UserWarning, match=rf"split 'id_test': {100 * frac:.1f}% of activations "
                                         "are negative") as record:
        r = evaluate(load_bundle(path), Setting("ash-s", {"p": 65}))
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
