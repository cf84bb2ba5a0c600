"""Any p at an inner layer: the layer cube (``ash_core.layers.cube``) is the exact replay at
every integer p of the slider, bit for bit, and the dashboard builds it once per (bundle,
method, layer) in the background behind exact numbers. Also the first views of a large
bundle: the leaderboard's rows come as they are computed, and views that do not show the
current setting's numbers do not compute them."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_dashboard_app import APP, ok
from test_layers_dashboard import make_layer_bundle

from ash_core import Setting, load_bundle
from ash_core.layers import LayerEvaluator, layer_result, layer_sweep
from ash_core.layers.cube import EVERY_P, join, layer_cube
from ash_core.reports.leaderboard import leaderboard


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    return make_layer_bundle(tmp_path_factory.mktemp("cube") / "rn20.layers")[0]


def test_the_layer_cube_is_the_exact_replay_at_every_p(layered):
    bundle = load_bundle(layered)
    cube = layer_cube(bundle, "ash-s", "layer3", device="cpu", cache=False)
    assert cube.grid == [float(p) for p in EVERY_P]
    ev = LayerEvaluator(bundle, "layer3", device="cpu")
    for p in (1, 63, 65):  # off the grid 0..95 step 5, and on it
        exact = ev.evaluate(Setting("ash-s", {"p": p}))
        looked_up = layer_result(ev, Setting("ash-s", {"p": p}), sweep=cube)
        assert np.array_equal(looked_up.id_scores, exact.id_scores), p
        for name, s in exact.ood_scores.items():
            assert np.array_equal(looked_up.ood_scores[name], s), (p, name)
        assert looked_up.id_accuracy == exact.id_accuracy, p
        assert looked_up.to_dict() == exact.to_dict(), p


def test_join_orders_the_union_of_two_grids(layered):
    bundle = load_bundle(layered)
    a = layer_sweep(bundle, ["layer3"], "ash-p", grid=[10, 30], cache=False)
    b = layer_sweep(bundle, ["layer3"], "ash-p", grid=[20], cache=False)
    both = join(a, b)
    assert both.grid == [10.0, 20.0, 30.0]
    assert np.array_equal(both.energy["layer3"][1], b.energy["layer3"][0])
    assert np.array_equal(both.pred["layer3"][2], a.pred["layer3"][1])


def _gated_cube(monkeypatch, gate: threading.Event, calls: list):
    from dashboard import layer_replay

    real = layer_replay.layer_cube

    def gated(*args, **kwargs):
        calls.append(args[1:3])
        assert gate.wait(60)
        return real(*args, **kwargs)

    layer_replay._cubes.clear()
    monkeypatch.setattr(layer_replay, "layer_cube", gated)


def _numbers(at: AppTest) -> str:
    (caption,) = [c.value for c in at.caption if c.value.startswith("Numbers: ")]
    return caption


def _app(path, p) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params.update({"bundle": str(path), "method": "ash-s", "layer": "layer3",
                            "p": str(p), "convention": "ood"})
    return ok(at.run())


def test_off_grid_p_at_a_layer_is_exact_then_a_lookup_after_one_background_build(
        layered, monkeypatch):
    monkeypatch.setenv("ASH_BUNDLE_ROOTS", str(layered.parent))
    gate, calls = threading.Event(), []
    _gated_cube(monkeypatch, gate, calls)
    at = _app(layered, 63)
    assert "an exact replay" in _numbers(at)
    (bar,) = at.get("progress")
    assert "in the background" in bar.proto.text
    other = _app(layered, 67)  # a second session, the same (bundle, method, layer)
    assert "an exact replay" in _numbers(other)
    gate.set()
    for _ in range(200):
        if "a lookup" in _numbers(at):
            break
        time.sleep(0.05)
        at.run()
    assert "a lookup" in _numbers(at) and not at.get("progress")
    assert calls == [("ash-s", "layer3")]  # one build, shared by both sessions
    exact = LayerEvaluator(load_bundle(layered), "layer3", device="cpu").evaluate(
        Setting("ash-s", {"p": 63}, "local", "energy", "ood"))
    frame = at.dataframe[0].value.set_index("ood_set")
    for name, m in exact.ood.items():
        assert frame.loc[name, "auroc"] == 100 * m["auroc"], name  # bit for bit


@pytest.mark.parametrize("view", ["where", "leaderboard"])
def test_views_without_the_settings_numbers_do_not_compute_them(synthetic_bundle,
                                                                 monkeypatch, view):
    # an exact pass, a validation search and a cube build delayed the first leaderboard row
    from dashboard import replay, validation

    calls, searches = [], []
    real, real_marks = replay.replay, validation.marks
    monkeypatch.setattr(replay, "replay", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr(validation, "marks",
                        lambda *a, **k: searches.append(a) or real_marks(*a, **k))
    monkeypatch.setenv("ASH_BUNDLE_ROOTS", str(synthetic_bundle.parent))
    for shown in (view, "overview"):
        at = AppTest.from_file(APP, default_timeout=300)
        at.query_params.update({"bundle": str(synthetic_bundle), "view": shown, "p": "80"})
        ok(at.run())
        assert bool(calls) == bool(searches) == (shown == "overview"), shown
        assert any(t.key == "val" for t in at.toggle) == (shown != "where"), shown


def test_the_leaderboard_shows_its_rows_as_they_come(synthetic_bundle):
    seen = []
    board = leaderboard(load_bundle(synthetic_bundle), methods=["none", "msp", "ash-s"],
                        partial=lambda b: seen.append([r.method for r in b.rows]))
    assert seen == [["none"], ["none", "msp"], ["none", "msp", "ash-s"]]
    assert [r.method for r in board.rows] == seen[-1]
