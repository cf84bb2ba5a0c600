"""The format's declaration (``bundle.schema``) is what the loader applies: every declared
field, with a value on each side of its rule, enumerated from the declaration itself."""

from __future__ import annotations

import json
import re

import pytest
from bundle_forge import simple
from test_format_fuzz import _set

from ash_core import load_bundle
from ash_core.bundle.schema import MANIFEST_RULE, SchemaError, walk
from ash_core.errors import BundleError

FIELDS = walk(MANIFEST_RULE)


def test_the_declaration_covers_manifest_variant_and_layer_fields():
    paths = {p for p, _ in FIELDS}
    for p in ("feature_dim", "splits[].n", "splits[].variants", "variants.odin.temperature",
              "variants.odin.epsilon", "layers.num_classes", "layers.maps.*.shape", "groups",
              "layers.model_args"):
        assert p in paths, p


@pytest.mark.parametrize(("path", "rule"), FIELDS, ids=[p for p, _ in FIELDS])
def test_each_rule_tells_its_examples_apart(path, rule):
    good, bad = rule.examples()
    assert good and bad
    for value in good:
        rule.check(value, path)
    for value in bad:
        with pytest.raises(SchemaError):
            rule.check(value, path)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    import numpy as np

    def every_field(m):  # the optional entries too, so each declared field is present
        m["groups"] = {"g": ["far"]}
        m["splits"][0].update(meta=None, thumbnails=None)
        m["layers"] = {"format": 1, "arch": "cifar_resnet20", "num_classes": 3,
                       "model_args": {"img_size": 32}, "maps": {
            "layer1": {"point": "layer1", "where": "", "tail": None, "shape": [1, 1, 1],
                       "files": {"test": "layers/layer1/test.safetensors"}}}}

    odin = {"variants": {"odin": np.ones((12, 6))}}
    return simple(tmp_path_factory.mktemp("schema") / "b", test=odin, edit=every_field,
                  variants={"odin": {"temperature": 1000.0, "epsilon": 0.001}})


@pytest.mark.parametrize(("path", "rule"), FIELDS, ids=[p for p, _ in FIELDS])
def test_the_loader_refuses_every_declared_field_out_of_its_rule(base, tmp_path, path, rule):
    import shutil

    root = tmp_path / "b"
    shutil.copytree(base, root)
    manifest = json.loads((root / "manifest.json").read_text())
    bad = rule.examples()[1][0]
    assert _set(manifest, path, bad, False), path
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError) as info:
        load_bundle(root)
    field = [seg for seg in re.split(r"[.\[\]]", path) if seg and seg != "*"][-1]
    assert field in str(info.value)
