"""Issue 22: near-OOD / far-OOD groups of OOD test splits (the manifest's ``groups``),
validated at load and write, and their averages beside the overall one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bundle_helpers import edit_manifest

from ash_core import create_bundle, load_bundle
from ash_core.errors import BundleError

GROUPS = {"near": ["n1", "n2"], "far": ["f1"]}


def _bundle(path, groups=GROUPS):
    rng = np.random.default_rng(0)
    dim, c = 16, 4
    weight, bias = rng.normal(size=(c, dim)), np.zeros(c)

    def feats(n, shift):
        return np.abs(rng.normal(size=(n, dim)) + shift).astype(np.float32)

    splits = {"test": ("id", feats(60, 0.0), rng.integers(0, c, 60)),
              "train": ("id_fit", feats(60, 0.0)),
              "n1": ("ood", feats(40, 0.3)), "n2": ("ood", feats(40, 0.5)),
              "f1": ("ood", feats(40, 2.0)), "other": ("ood", feats(40, 1.0)),
              "val": ("ood_val", feats(20, 1.0))}
    return create_bundle(path, (weight, bias), splits, groups=groups)


def test_groups_round_trip(tmp_path):
    bundle = load_bundle(_bundle(tmp_path / "b"))
    assert bundle.groups == {"near": ("n1", "n2"), "far": ("f1",)}


def test_no_groups_no_key(tmp_path):
    root = _bundle(tmp_path / "b", groups=None)
    assert "groups" not in json.loads((root / "manifest.json").read_text())
    assert load_bundle(root).groups == {}


@pytest.mark.parametrize("groups, words", [
    ({"near": ["missing"]}, "does not have"),
    ({"near": ["val"]}, "role 'ood_val'"),
    ({"near": ["test"]}, "role 'id'"),
    ({"near": ["n1"], "far": ["n1"]}, "at most one group"),
    ({"bad name": ["n1"]}, "group name"),
    ({"": ["n1"]}, "group name"),
    ({".x": ["n1"]}, "group name"),
    ({"near": []}, "at least one"),
    ({"near": "n1"}, "at least one"),
    (["near"], "must be an object"),
])
def test_bad_groups_are_refused_at_load_and_write(tmp_path, groups, words):
    root = _bundle(tmp_path / "b", groups=None)
    edit_manifest(root, lambda m: m.__setitem__("groups", groups))
    with pytest.raises(BundleError, match=words):
        load_bundle(root, verify=False)
    with pytest.raises(BundleError, match=words):
        _bundle(tmp_path / "c", groups=groups)
    assert not (tmp_path / "c").exists()
