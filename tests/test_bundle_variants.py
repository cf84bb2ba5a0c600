"""Feature variants of a split (e.g. ODIN's perturbed features): written, declared,
verified and loaded like the split's own features; bundles without them are unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from bundle_helpers import edit_manifest, small_splits, write_small

from ash_core import load_bundle
from ash_core.errors import BundleError

ODIN = {"odin": {"temperature": 1000.0, "epsilon": 0.0014}}


def _with_variant(splits=None, rows=None):
    splits = splits or small_splits()
    for s in splits:
        if s.role != "id_fit":
            feats = np.asarray(s.features)[: rows or len(s.features)]
            s.variants = {"odin": feats + 0.25}
    return splits


def test_variant_round_trip(tmp_path):
    splits = _with_variant()
    b = load_bundle(write_small(tmp_path / "b", splits=splits, variants=ODIN))
    assert b.variant("odin") == ODIN["odin"]
    assert b.variant("other") is None
    assert b.missing_variant("odin") == []
    assert b.missing_variant("odin", [b.id_fit]) == ["id_train"]
    got = b.split("ood_a").variant_features_tensor("odin")
    assert np.array_equal(got.numpy(), np.asarray(splits[2].features) + 0.25)
    assert b.split("id_train").variants == []
    assert b.manifest["splits"][0]["variants"] == {"odin": "variants/odin/id_test.safetensors"}
    assert "variants/odin/id_test.safetensors" in b.manifest["files"]


def test_bundle_without_variants_has_no_variants_key(tmp_path):
    b = load_bundle(write_small(tmp_path / "b"))
    assert "variants" not in b.manifest and b.variant("odin") is None
    assert b.missing_variant("odin") == ["id_test", "ood_a"]
    with pytest.raises(BundleError, match="no 'odin' variant.*re-extract"):
        b.id_split.variant_features_tensor("odin")


def test_undeclared_variant_is_refused(tmp_path):
    with pytest.raises(BundleError, match="not declared"):
        write_small(tmp_path / "b", splits=_with_variant())
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("bad", [[1], {"odin": [1]}, {"../x": {}}, {"odin": {"t": True}}])
def test_bad_variant_declaration_is_refused(tmp_path, bad):
    with pytest.raises(BundleError, match="variant|variants"):
        write_small(tmp_path / "b", splits=small_splits(), variants=bad)


def test_variant_with_wrong_rows_is_refused(tmp_path):
    with pytest.raises(BundleError, match="variant 'odin'.*rows for 20 samples"):
        write_small(tmp_path / "b", splits=_with_variant(rows=7), variants=ODIN)


def test_tampered_variant_file_is_caught(tmp_path):
    root = write_small(tmp_path / "b", splits=_with_variant(), variants=ODIN)
    path = root / "variants/odin/ood_a.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="ood_a"):
        load_bundle(root)


def test_manifest_naming_an_undeclared_variant_is_refused(tmp_path):
    root = write_small(tmp_path / "b", splits=_with_variant(), variants=ODIN)
    edit_manifest(root, lambda m: m.pop("variants"))
    with pytest.raises(BundleError, match="does not declare"):
        load_bundle(root)


def test_variant_path_outside_the_bundle_is_refused(tmp_path):
    root = write_small(tmp_path / "b", splits=_with_variant(), variants=ODIN)
    edit_manifest(root, lambda m: m["splits"][0]["variants"].__setitem__("odin", "../x"))
    with pytest.raises(BundleError):
        load_bundle(root, verify=False)


def test_variant_of_another_shape_is_refused(tmp_path):
    root = write_small(tmp_path / "b", splits=_with_variant(), variants=ODIN)
    # point id_test's variant at the split file of another bundle shape: n differs
    other = write_small(tmp_path / "c", splits=_with_variant(small_splits(n=5)), variants=ODIN)
    (root / "variants/odin/id_test.safetensors").write_bytes(
        (other / "variants/odin/id_test.safetensors").read_bytes())
    with pytest.raises(BundleError, match="variant 'odin'.*declares n=20 but holds 5"):
        load_bundle(root, verify=False)
