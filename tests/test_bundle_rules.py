"""Bundles that were accepted in silence before: each one is now a clear BundleError.

Labels out of range or of the wrong dtype, undeclared feature dtypes, manifests without
hashes, huge sparse files, symlink loops, deep JSON, unsafe split names.
"""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
from bundle_helpers import edit_manifest, rehash, small_splits, write_small
from safetensors.numpy import save_file

from ash_core import Setting, SplitData, evaluate, load_bundle
from ash_core.errors import BundleError


@pytest.fixture
def alarm():
    """Turn a hang into a failure: the old loader hashed a 64 GiB file for minutes."""

    def expired(*_):
        raise TimeoutError("took over 5 s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def replace_split(root, name: str, arrays: dict) -> None:
    """Rewrite a split file behind the writer's back, with a valid sha256."""
    save_file(arrays, str(root / "splits" / f"{name}.safetensors"))
    rehash(root, f"splits/{name}.safetensors")


FEATS = np.ones((20, 8), np.float32)


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(("split", "labels", "match"), [
    ("id_test", np.full(20, 3, np.int64), "labels from 3 to 3; allowed: 0..2"),
    ("id_test", np.full(20, -7, np.int64), "labels from -7 to -7; allowed: 0..2"),
    ("id_test", np.full(20, -1, np.int64), "role 'id'.*allowed: 0..2"),
    ("id_test", np.full(20, 2**62, np.int64), "labels from 4611686018427387904"),
    ("id_train", np.full(20, 10, np.int64), "'id_train' \\(role 'id_fit'\\)"),
    ("ood_a", np.full(20, -2, np.int64), "allowed: -1 \\(unknown\\) or 0..2"),
    ("id_test", np.zeros(20, np.float64), "'labels' is stored as F64; allowed: I64"),
    ("id_test", np.zeros(20, np.int32), "'labels' is stored as I32; allowed: I64"),
    ("id_test", np.zeros((20, 1), np.int64), r"labels must be int64 of shape \(20,\)"),
    ("id_test", np.zeros(19, np.int64), r"labels must be int64 of shape \(20,\)"),
])
def test_bad_labels_are_refused(tmp_path, split, labels, match):
    """Regression: ID labels 3 or -7 for 3 classes, 2**62 and F64 labels loaded silently
    (and gave a wrong ID accuracy)."""
    path = write_small(tmp_path / "b")
    replace_split(path, split, {"features": FEATS, "labels": labels})
    with pytest.raises(BundleError, match=match):
        load_bundle(path)


def test_a_renamed_labels_tensor_is_refused_by_name(tmp_path):
    """Regression: 'label' instead of 'labels' silently gave id_accuracy null."""
    path = write_small(tmp_path / "b")
    replace_split(path, "id_test", {"features": FEATS, "label": np.zeros(20, np.int64)})
    with pytest.raises(BundleError, match="tensor named 'label'; expected only 'features', "
                                         "'labels'"):
        load_bundle(path)


def test_the_id_split_must_have_labels(tmp_path):
    path = write_small(tmp_path / "b")
    replace_split(path, "id_test", {"features": FEATS})
    with pytest.raises(BundleError, match="'id_test' \\(role 'id'\\) has no labels"):
        load_bundle(path)
    splits = small_splits()
    splits[0] = SplitData("id_test", "id", FEATS)
    with pytest.raises(BundleError, match="has no labels"):
        write_small(tmp_path / "c", splits=splits)


def test_ood_labels_may_be_unknown_and_the_writer_checks_ranges(tmp_path):
    path = write_small(tmp_path / "b")
    replace_split(path, "ood_a", {"features": FEATS, "labels": np.full(20, -1, np.int64)})
    assert (load_bundle(path).split("ood_a").labels == -1).all()
    for bad, match in ((np.full(20, 3), "labels from 3 to 3"), (np.full(20, 0.5), "integers")):
        splits = small_splits()
        splits[0] = SplitData("id_test", "id", FEATS, bad)
        with pytest.raises(BundleError, match=match):
            write_small(tmp_path / "c", splits=splits)


def test_head_must_be_float32(tmp_path):
    path = write_small(tmp_path / "b")
    save_file({"weight": np.ones((3, 8), np.float16), "bias": np.zeros(3, np.float16)},
              str(path / "head.safetensors"))
    rehash(path, "head.safetensors")
    with pytest.raises(BundleError, match="is stored as F16; allowed: F32"):
        load_bundle(path)


# --------------------------------------------------------------------------- hashes


def test_a_manifest_without_hashes_is_refused_unless_verify_is_off(tmp_path):
    """Regression: without "files" (or an entry in it) verification was silently off."""
    path = write_small(tmp_path / "b")
    edit_manifest(path, lambda m: m["files"].pop("splits/ood_a.safetensors"))
    with pytest.raises(BundleError, match="no sha256 for splits/ood_a.safetensors.*verify=False"):
        load_bundle(path)
    with pytest.warns(UserWarning, match="without verification; no sha256 recorded for "
                                         "splits/ood_a.safetensors"):
        assert len(load_bundle(path, verify=False).split("ood_a")) == 20
    edit_manifest(path, lambda m: m.pop("files"))
    with pytest.raises(BundleError, match="no sha256 for head.safetensors, splits/"):
        load_bundle(path)


# --------------------------------------------------------------------------- hostile files


def test_a_sparse_64_gib_split_fails_fast(tmp_path, alarm):
    """Regression: the loader hashed the whole file before checking its size (minutes)."""
    path = write_small(tmp_path / "b")
    with open(path / "splits" / "ood_a.safetensors", "r+b") as fh:
        fh.truncate(64 << 30)  # sparse: instant, no disk used
    start = time.perf_counter()
    with pytest.raises(BundleError, match="bytes after the last tensor"):
        load_bundle(path)
    assert time.perf_counter() - start < 1.0


def test_a_huge_sidecar_fails_fast(tmp_path, alarm):
    path = write_small(tmp_path / "b")
    with open(path / "splits" / "ood_a.csv", "r+b") as fh:
        fh.truncate(64 << 30)
    with pytest.raises(BundleError, match="sidecar 'splits/ood_a.csv' is 68719476736 bytes"):
        load_bundle(path)


def test_symlink_loops_are_a_bundle_error(tmp_path):
    """Regression: a symlink loop raised RuntimeError from Path.resolve."""
    path = write_small(tmp_path / "b")
    target = path / "splits" / "ood_a.safetensors"
    target.unlink()
    os.symlink(target, target)  # points at itself
    with pytest.raises(BundleError, match="cannot be resolved.*symlink loop"):
        load_bundle(path)
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(loop)


def test_deep_or_huge_manifests_are_a_bundle_error(tmp_path):
    """Regression: a 200k-deep manifest raised RecursionError."""
    path = write_small(tmp_path / "b")
    (path / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(BundleError, match="nested deeper than 64 levels"):
        load_bundle(path)
    manifest = json.loads(json.dumps({"format": "ash-bundle", "pad": "x" * (17 << 20)}))
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="larger than 16 MiB"):
        load_bundle(path)


@pytest.mark.parametrize("name", [["a"], {"a": 1}, "a/b", "../x", ".hidden", "a b", "x" * 101,
                                  "", 7, None, "é"])
def test_unsafe_split_names_are_refused(tmp_path, name):
    """Regression: a list or dict as a split name raised TypeError; '/' was accepted."""
    path = write_small(tmp_path / "b")
    edit_manifest(path, lambda m: m["splits"][2].__setitem__("name", name))
    with pytest.raises(BundleError, match=r"split name .* is not allowed|name must be an allowed name"):
        load_bundle(path)


@pytest.mark.parametrize(("pairs", "match"), [
    ([("a", "id"), ("b", "id_val"), ("c", "id_val")], "at most 1 split with role 'id_val'"),
    ([("a", "id"), ("b", "id_fit"), ("c", "id_fit")], "at most 1 split with role 'id_fit'"),
    ([("a", "ood")], "exactly one split with role 'id'"),
    ([("a", "id"), ("a", "ood")], "unique; repeated: a"),
    ([("a", "id"), ("b", "test")], "role must be one of id, id_fit, id_val, ood, ood_val"),
    ([("a", "id"), (["b"], "ood")], "split name \\['b'\\] is not allowed"),
])
def test_check_split_roles(pairs, match):
    from ash_core.bundle import check_split_roles

    with pytest.raises(BundleError, match=match):
        check_split_roles(pairs)


def test_validation_roles_round_trip(tmp_path):
    splits = small_splits()
    feats = np.asarray(splits[0].features)
    splits += [SplitData("id_v", "id_val", feats, np.zeros(20)),
               SplitData("ood_v1", "ood_val", feats * 3),
               SplitData("ood_v2", "ood_val", feats * 4)]
    b = load_bundle(write_small(tmp_path / "b", splits=splits))
    assert b.id_val.name == "id_v" and [s.name for s in b.ood_val_splits] == ["ood_v1", "ood_v2"]
    assert [s.name for s in b.ood_splits] == ["ood_a"]  # validation sets are not test sets
    assert load_bundle(write_small(tmp_path / "c")).id_val is None
    r = evaluate(b, Setting("ash-s", {"p": 65}))
    assert list(r.ood) == ["ood_a"]
