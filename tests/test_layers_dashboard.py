"""Where to ASH without real data: a synthetic bundle with maps (a random ResNet-20 on noise),
the store's checks, ``--layer`` on the CLI and the dashboard view."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest
from test_dashboard_app import APP, ok

from ash_core import Setting, SplitData, evaluate, kept_count, load_bundle, write_bundle
from ash_core.cli import main as cli_main
from ash_core.errors import BundleError, ParameterError
from ash_core.layers import (
    LayerEvaluator,
    layer_result,
    layer_sweep,
    open_layers,
    replay_logits,
    sweep_result,
)
from ash_core.layers.store import add_layers
from ash_core.layers.tails import capture_point, tail_state
from ash_core.maths.curves import tpr_threshold
from ash_core.models.architectures import CifarResNet

LAYERS = ("layer1", "layer2", "layer3")


def make_layer_bundle(path, n=(24, 12, 12), seed=0, val=False):
    """A bundle of a random ResNet-20 on shifted noise with maps of every stage (``val``:
    with id_val / ood_val splits too, 12 rows each)."""
    torch.manual_seed(seed)
    model = CifarResNet(20).eval()
    points = {name: capture_point("cifar_resnet20", model, name) for name in LAYERS}
    modules = dict(model.named_modules())
    splits, maps = [], {name: {} for name in LAYERS}
    specs = [("id", "id", 0.0), ("far", "ood", 1.5), ("near", "ood", 0.3)]
    if val:
        specs, n = [*specs, ("vid", "id_val", 0.0), ("vood", "ood_val", 0.8)], (*n, 12, 12)
    for (split, role, shift), rows in zip(specs, n, strict=True):
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
        splits.append(SplitData(split, role, feats.numpy(),
                                labels if role in ("id", "id_val") else None))
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


def _cli_error(argv) -> tuple[int, str]:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli_main([str(a) for a in argv])
    return code, err.getvalue()


@pytest.mark.parametrize(("value", "match"), [
    ("10", "layers.num_classes must be an integer from 1"),
    (10**12, "layers.num_classes must be an integer from 1"),
    (10**6, "layers.num_classes is 1000000 but the head has 10 outputs"),
])
def test_hostile_layer_num_classes_is_refused(layered, tmp_path, value, match):
    path = tmp_path / "b"
    shutil.copytree(layered[0], path)
    m = json.loads((path / "manifest.json").read_text())
    m["layers"]["num_classes"] = value
    (path / "manifest.json").write_text(json.dumps(m))
    code, err = _cli_error(["evaluate", path, "--method", "ash-s", "--p", "65",
                            "--layer", "layer2"])
    assert code == 2 and "Traceback" not in err and re.search(match, err), err


def test_lying_but_self_consistent_map_shape_is_refused(layered, tmp_path):
    """Maps reshaped [n, 32, 16, 16] -> [n, 16, 32, 16], manifest shape and hashes updated:
    every file agrees with the manifest, but not with the tail's weights."""
    from safetensors.numpy import load_file, save_file

    path = tmp_path / "b"
    shutil.copytree(layered[0], path)
    m = json.loads((path / "manifest.json").read_text())
    entry = m["layers"]["maps"]["layer2"]
    for rel in entry["files"].values():
        a = load_file(str(path / rel))["maps"]
        a = a.reshape(len(a), a.shape[1] // 2, a.shape[2] * 2, a.shape[3])
        save_file({"maps": a}, str(path / rel))
        m["files"][rel] = hashlib.sha256((path / rel).read_bytes()).hexdigest()
        entry["shape"] = list(a.shape[1:])
    (path / "manifest.json").write_text(json.dumps(m))
    code, err = _cli_error(["evaluate", path, "--method", "ash-s", "--p", "65",
                            "--layer", "layer2"])
    assert code == 2 and "Traceback" not in err, err
    assert "declares maps of shape [16, 32, 16], which its tail" in err


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


# --------------------------------------------------------------------------- layer control


def _layer_app(path, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params.update({"bundle": str(path), "method": "ash-s", **{k: str(v) for k, v in
                                                                       params.items()}})
    return at.run()


def _table(at) -> dict[str, dict[str, float]]:
    frame = at.dataframe[0].value.set_index("ood_set")
    return {n: {k: frame.loc[n, k] for k in frame.columns} for n in frame.index}


def _expected(path, layer, p, convention="id"):
    ev = LayerEvaluator(load_bundle(path), layer, device="cpu")
    return (ev.evaluate(Setting("ash-s", {"p": p}, "local", "energy", convention)),
            ev.evaluate(Setting("none", {}, "local", "energy", convention)))


@pytest.mark.parametrize("p", [65, 63])  # on the layer grid (a sweep lookup), off it (exact)
def test_layer_control_shows_the_replay_at_that_layer(layered, monkeypatch, p):
    path, _ = layered
    monkeypatch.setenv("ASH_BUNDLE_ROOTS", str(path.parent))
    at = ok(_layer_app(path, layer="layer2", p=p, convention="ood"))
    assert at.selectbox(key="layer").value == "layer2"
    assert at.query_params["layer"] == "layer2"
    shaped, unshaped = _expected(path, "layer2", p, "ood")
    table = _table(at)
    for name, m in shaped.ood.items():
        for k, v in m.as_dict().items():
            assert table[name][k] == 100 * v, (name, k)  # the replay's numbers, bit for bit
            assert table[name][f"{k}_delta"] == pytest.approx(  # against no shaping at layer2
                100 * (v - unshaped.ood[name].as_dict()[k]), abs=1e-9), (name, k)
    cards = {m.label: m.value for m in at.metric}
    assert cards["ID accuracy (shaped)"] == f"{100 * shaped.id_accuracy['shaped']:.2f}%"
    penultimate = evaluate(load_bundle(path), Setting("ash-s", {"p": p}, "local", "energy", "ood"))
    assert any(table[n]["auroc"] != 100 * penultimate.ood[n]["auroc"] for n in table
               if n != "Average")
    captions = " ".join(c.value for c in at.caption)
    assert f"keeps k = {kept_count(32 * 16 * 16, p)} of D = 8192" in captions
    assert "Layer layer2: ash-s after the last block of layer2" in captions
    assert "replayed from layer2" in captions


def test_layer_control_follows_distributions_and_curves(layered, monkeypatch):
    path, _ = layered
    monkeypatch.setenv("ASH_BUNDLE_ROOTS", str(path.parent))
    shaped, unshaped = _expected(path, "layer3", 90)
    for view in ("distributions", "curves"):
        at = ok(_layer_app(path, layer="layer3", p=90, view=view))
        fig = json.loads(at.get("plotly_chart")[0].proto.spec)
        assert "Layer layer3" in " ".join(c.value for c in at.caption)
        if view == "curves":  # titles: AUROC unshaped -> shaped, both replayed from layer3
            titles = [a["text"] for a in fig["layout"]["annotations"]]
            for name, m in shaped.ood.items():
                base = unshaped.ood[name]["auroc"]
                assert f"{name}<br>AUROC {100 * base:.1f} → {100 * m['auroc']:.1f}" in titles
        else:  # the TPR-95 thresholds of the shaped and unshaped ID energies at layer3
            text = " ".join(c.value for c in at.caption)
            assert f"shaped: {tpr_threshold(shaped.id_scores):.3g}" in text
            assert f"no shaping: {tpr_threshold(unshaped.id_scores):.3g}" in text


def test_invalid_layer_in_a_link_is_reported(layered, monkeypatch):
    path, _ = layered
    monkeypatch.setenv("ASH_BUNDLE_ROOTS", str(path.parent))
    at = ok(_layer_app(path, layer="layer9", p=65))
    assert any("ignored layer='layer9'" in w.value and "layer1, layer2, layer3, penultimate"
               in w.value for w in at.warning)
    assert at.selectbox(key="layer").value == "penultimate"
    penultimate = evaluate(load_bundle(path), Setting("ash-s", {"p": 65}))
    table = _table(at)
    assert all(table[n]["auroc"] == 100 * m["auroc"] for n, m in penultimate.ood.items())


def test_layer_is_ignored_visibly_where_it_has_no_meaning(layered, synthetic_bundle,
                                                         monkeypatch):
    path, _ = layered
    monkeypatch.setenv("ASH_BUNDLE_ROOTS", f"{path.parent}:{synthetic_bundle.parent}")
    for view in ("tradeoff", "inspector"):  # their numbers stay at the penultimate layer
        at = ok(_layer_app(path, layer="layer2", p=65, view=view))
        captions = [c.value for c in at.caption]
        assert any("applies to Overview, Distributions and Curves only" in c for c in captions)
        assert "Numbers: exact, as `ash-explore evaluate`." in captions, view
        assert not any("replayed from" in c or "D = 8192" in c for c in captions), view
    at = ok(_layer_app(path, layer="layer2", method="gen"))
    assert any("Layer layer2 is not used: gen is not an ASH variant" in c.value
               for c in at.caption)
    assert at.selectbox(key="layer").disabled
    at = ok(_layer_app(synthetic_bundle, layer="layer2"))
    assert any("ignored layer='layer2'" in w.value and "no layer maps" in w.value
               for w in at.warning)


def test_layer_result_lookup_equals_the_exact_replay(layered):
    """``layer_result`` from a sweep (the dashboard's lookup) and without one (an exact
    replay) are the same numbers, bit for bit, shaped and unshaped."""
    path, _ = layered
    bundle = load_bundle(path)
    sweep = layer_sweep(bundle, ["layer1"], "ash-s", grid=[0, 65], cache=False)
    ev = LayerEvaluator(bundle, "layer1", ["near"], device="cpu")
    for method, p in (("ash-s", 0), ("ash-s", 65), ("none", None)):
        looked_up = layer_result(ev, Setting(method, {} if p is None else {"p": p}, "local", "energy", "ood"), sweep=sweep)
        exact = layer_result(ev, Setting(method, {} if p is None else {"p": p}, "local", "energy", "ood"))
        assert looked_up.to_dict() == exact.to_dict() == \
            ev.evaluate(Setting(method, {} if p is None else {"p": p}, "local", "energy", "ood")).to_dict()
        assert np.array_equal(looked_up.id_scores, exact.id_scores)
        assert list(looked_up.ood_scores) == ["near"]
        assert np.array_equal(looked_up.ood_scores["near"], exact.ood_scores["near"])
        assert looked_up.engine == exact.engine == "replay:layer1"
    penultimate = evaluate(bundle, Setting("none"))
    assert not np.array_equal(layer_result(ev, Setting("none"), sweep=sweep).id_scores,
                              penultimate.id_scores)  # replayed from the fp16 map
    assert sweep_result(sweep, bundle, "layer1", 50) is None  # off the grid: not a lookup
    with pytest.raises(ParameterError, match="gen is not an ASH variant"):
        layer_result(ev, Setting("gen"))
    with pytest.raises(ParameterError, match="global thresholds needs the activations"):
        layer_result(ev, Setting("ash-s", {"p": 65}, "global"))


def test_validated_p_is_shown_at_the_layer(tmp_path, monkeypatch):
    """The overview's validated-parameters toggle: p chosen at the penultimate layer on the
    validation splits, the numbers at the layer control's layer (as the caption says)."""
    path, _ = make_layer_bundle(tmp_path / "val.layers", val=True)
    monkeypatch.setenv("ASH_BUNDLE_ROOTS", str(tmp_path))
    at = ok(_layer_app(path, layer="layer2", p=63, val=1))
    assert at.toggle(key="val").value
    (header,) = [h.value for h in at.subheader if h.value.startswith("Overview")]
    p = float(header.split("p=")[1].split()[0])
    assert p != 63
    shaped, _ = _expected(path, "layer2", p)
    table = _table(at)
    assert all(table[n]["auroc"] == 100 * m["auroc"] for n, m in shaped.ood.items())
    assert any("validated p is chosen at the penultimate layer" in c.value for c in at.caption)


def test_bundle_verify_checks_layer_maps_and_tails(layered, tmp_path):
    code, err = _cli_error(["bundle", "verify", layered[0]])
    assert code == 0, err
    path = tmp_path / "b"
    shutil.copytree(layered[0], path)
    f = path / "layers" / "layer3" / "near.safetensors"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0xFF
    f.write_bytes(bytes(data))
    code, err = _cli_error(["bundle", "verify", path])
    assert code == 2 and "layers/layer3/near.safetensors does not match the sha256" in err, err
