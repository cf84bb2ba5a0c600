"""Where to ASH without real data: a synthetic bundle with maps (a random ResNet-20 on noise),
the store's checks, ``--layer`` on the CLI and the dashboard view."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest
from test_dashboard_app import APP, ok

from ash_core import SplitData, load_bundle, write_bundle
from ash_core.cli import main as cli_main
from ash_core.errors import BundleError
from ash_core.extract.models import CifarResNet
from ash_core.layers import layer_sweep, open_layers, replay_logits
from ash_core.layers.store import add_layers
from ash_core.layers.tails import capture_point, tail_state

LAYERS = ("layer1", "layer2", "layer3")


def make_layer_bundle(path, n=(24, 12, 12), seed=0):
    """A bundle of a random ResNet-20 on shifted noise with maps of every stage."""
    torch.manual_seed(seed)
    model = CifarResNet(20).eval()
    points = {name: capture_point("cifar_resnet20", model, name) for name in LAYERS}
    modules = dict(model.named_modules())
    splits, maps = [], {name: {} for name in LAYERS}
    for (split, role, shift), rows in zip((("id", "id", 0.0), ("far", "ood", 1.5),
                                           ("near", "ood", 0.3)), n, strict=True):
        x = torch.randn(rows, 3, 32, 32) + shift
        got = {}
        hooks = [modules[p].register_forward_hook(
            lambda m, i, o, name=name, got=got: got.__setitem__(name, o.half().numpy()))
            for name, (p, _) in points.items()]
        with torch.no_grad():
            feats = model.forward_features(x)
            labels = model.linear(feats).argmax(1).numpy()
        for h in hooks:
            h.remove()
        for name in LAYERS:
            maps[name][split] = got[name]
        splits.append(SplitData(split, role, feats.numpy(), labels if role == "id" else None))
    write_bundle(path, model.linear.weight.detach().numpy(), model.linear.bias.detach().numpy(),
                 [str(i) for i in range(10)], splits)
    tails = {name: tail_state("cifar_resnet20", model, name) for name in LAYERS}
    add_layers(path, "cifar_resnet20", 10, points, tails, maps)
    return path, model


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    return make_layer_bundle(tmp_path_factory.mktemp("lb") / "rn20.layers")


def test_old_readers_load_a_bundle_with_maps(layered):
    path, _ = layered
    bundle = load_bundle(path)  # the version-1 loader: the extra key and files are ignored
    assert json.loads((path / "manifest.json").read_text())["version"] == 1
    assert open_layers(bundle).names == [*LAYERS, "penultimate"]


def test_tampered_map_is_refused(tmp_path):
    path, _ = make_layer_bundle(tmp_path / "b", n=(8, 4, 4))
    f = path / "layers" / "layer2" / "far.safetensors"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0xFF
    f.write_bytes(bytes(data))
    maps = open_layers(load_bundle(path))
    with pytest.raises(BundleError, match="sha256"):
        maps.maps("layer2", "far")
    assert maps.maps("layer2", "id").shape == (8, 32, 16, 16)


def test_replay_none_is_the_forward_of_the_stored_map(layered):
    path, model = layered
    maps = open_layers(load_bundle(path))
    m = torch.from_numpy(maps.maps("layer1", "id").astype(np.float32))
    with torch.no_grad():
        expected = model.forward_from("layer1", m)
    assert torch.allclose(replay_logits(maps, "layer1", "id"), expected, atol=1e-5)


def test_cli_layer_option(layered, capsys):
    path, _ = layered
    assert cli_main(["evaluate", str(path), "--layer", "layer2", "--method", "ash-s",
                     "--p", "65", "--format", "json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["ood"]) == {"far", "near"}
    assert cli_main(["sweep", str(path), "--layer", "layer3", "--methods", "ash-p,ash-s",
                     "--p", "0,50", "--format", "csv", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and lines[0].startswith("method,p,far/fpr95")
    assert cli_main(["evaluate", str(path), "--layer", "layer3", "--method", "react"]) == 2
    assert "per-sample method" in capsys.readouterr().err


def test_where_view_renders_figure5_and_table6(layered, monkeypatch):
    path, _ = layered
    monkeypatch.setenv("ASH_BUNDLE_ROOTS", str(path.parent))
    sweep = layer_sweep(load_bundle(path), None, "ash-s")  # the view reuses this disk cache
    tables = []
    for p in ("63", "90"):
        at = AppTest.from_file(APP, default_timeout=120)
        at.query_params.update({"bundle": str(path), "view": "where", "method": "ash-s",
                                "p": p})
        ok(at.run())
        assert len(at.get("plotly_chart")) == 1
        tables.append(at.dataframe[0].value)
    assert list(tables[0].index) == [*LAYERS, "penultimate"]
    assert tables[0]["AUROC"].tolist() == [round(100 * r["auroc"], 2) for r in sweep.table(65)]
    assert not tables[0].equals(tables[1])


def test_where_view_explains_bundles_without_maps(synthetic_bundle, monkeypatch):
    monkeypatch.setenv("ASH_BUNDLE_ROOTS", str(synthetic_bundle.parent))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"bundle": str(synthetic_bundle), "view": "where"})
    at.run()
    ok(at)
    assert any("make layers" in i.value for i in at.info)
