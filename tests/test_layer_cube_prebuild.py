"""``make layers`` prebuilds the layer cubes of the dashboard's default variant
(``scripts/build_layer_bundles.py``: ``build_cubes``, two worker processes of one torch
thread): what it writes is what ``layer_cube`` (the dashboard's layer control) reads, with no
rebuild, and a lookup in it is the exact replay at an off-grid p bit for bit, though that
replay runs here on torch's own thread count."""

from __future__ import annotations

import numpy as np
import pytest
from test_layers_dashboard import make_layer_bundle
from vit_hybrid_helpers import script

import ash_core.layers.sweep as sweep
from ash_core import Setting, load_bundle
from ash_core.layers import LayerEvaluator, layer_result
from ash_core.layers.cube import EVERY_P, layer_cube
from dashboard.state import DEFAULT_METHOD

LAYERS = ("layer1", "layer2", "layer3")


@pytest.fixture(scope="module")
def prebuilt(tmp_path_factory):
    path = make_layer_bundle(tmp_path_factory.mktemp("prebuild") / "rn20.layers")[0]
    build = script("build_layer_bundles")
    lines: list[str] = []
    cubes = build.build_cubes(path, build.CUBE_METHOD, jobs=2, device="cpu", log=lines.append)
    return path, cubes, lines


def test_the_prebuilt_cubes_are_the_default_variants_at_every_inner_layer(prebuilt):
    _, cubes, lines = prebuilt
    assert script("build_layer_bundles").CUBE_METHOD == DEFAULT_METHOD
    assert [c.layers for c in cubes] == [[layer] for layer in LAYERS]
    assert all(c.grid == [float(p) for p in EVERY_P] and c.method == DEFAULT_METHOD
               for c in cubes)
    assert all(c.cached for c in cubes)  # read back from disk after the workers wrote them
    for layer in LAYERS:  # one line per sweep built, with its wall and CPU time
        assert sum(f" {layer}: " in ln and " built in " in ln for ln in lines) == 2, lines


def test_the_dashboards_cube_is_read_from_the_prebuild_and_is_the_exact_replay(
        prebuilt, monkeypatch):
    path, _, _ = prebuilt
    bundle = load_bundle(path)

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the prebuilt cube was recomputed instead of read")

    with monkeypatch.context() as m:
        m.setattr(sweep, "_compute", no_rebuild)
        cubes = {layer: layer_cube(bundle, DEFAULT_METHOD, layer, cache=True)
                 for layer in LAYERS}
    for layer, cube in cubes.items():
        assert cube.cached, layer
        ev = LayerEvaluator(bundle, layer, device="cpu")
        for p in (7, 63):  # off the layer grid (0..95 step 5)
            setting = Setting(DEFAULT_METHOD, {"p": p})
            exact = ev.evaluate(setting)
            looked_up = layer_result(ev, setting, sweep=cube)
            assert np.array_equal(looked_up.id_scores, exact.id_scores), (layer, p)
            for name, s in exact.ood_scores.items():
                assert np.array_equal(looked_up.ood_scores[name], s), (layer, p, name)
            assert looked_up.to_dict() == exact.to_dict(), (layer, p)


@pytest.mark.parametrize("argv", [["--no-cubes", "--cubes", "all"],
                                  ["--no-cubes", "--cubes-only"], ["--jobs", "0"]])
def test_contradictory_cube_flags_are_one_error_line(argv, capsys, monkeypatch):
    def no_extract(*args, **kwargs):  # a flag let through must not touch cached_features/
        raise AssertionError(f"{argv} went on to extract")

    monkeypatch.setattr("ash_core.extract.extract", no_extract)
    with pytest.raises(SystemExit) as stop:
        script("build_layer_bundles").main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert sum(": error: " in ln for ln in err) == 1 and ": error: " in err[-1], err
    assert ("--jobs" if "--jobs" in argv else "--no-cubes") in err[-1], err
