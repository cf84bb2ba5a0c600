"""Every declared parameter has a dashboard control generated from its declaration, and a
move of it gives the CLI's ``--param NAME=VALUE`` numbers; the score box offers what the
method takes and says why where it offers nothing.

Enumerates the registry (``list_methods()``, ``list_feature_scores()``), and registers a
toy method to show that a new method gets its control with no dashboard code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_synthetic_bundle
from streamlit.testing.v1 import AppTest

from ash_core import ParamSpec, get_method, list_methods, load_bundle
from ash_core.cli import main as cli_main
from ash_core.features import list_feature_scores
from ash_core.methods import _registry
from ash_core.setting import declared_params
from dashboard import controls, offer
from dashboard import replay as dash_replay
from dashboard.state import State

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("controls")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASH_BUNDLE_ROOTS", str(root))
        yield make_synthetic_bundle(root / "main")


#: values that change the synthetic bundle's numbers where a step would not (it has few
#: classes: GEN's M above their count uses them all, as the default does)
MOVED = {"M": 2.0}


def moved(c: controls.Control) -> float:
    """A valid value away from the default (a step for integers, double for floats)."""
    if c.name in MOVED:
        return MOVED[c.name]
    q = next(q for q in declared_params(c.owner, c.owner)
             if q.name == c.name) if not c.of_score else \
        next(q for q in declared_params("ash-s", c.owner) if q.name == c.name)
    if q.kind == "int":
        return q.default + 1 if q.contains(q.default + 1) else q.default - 1
    return q.default * 2 if q.default else c.step


def cli(capsys, bundle: Path, *args: str) -> dict:
    capsys.readouterr()
    assert cli_main(["evaluate", str(bundle), "--format", "json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def numbers(result: dict) -> dict:
    return {k: result[k] for k in ("ood", "average", "id_accuracy")}


def shown(at: AppTest) -> str:
    return {m.label: m.value for m in at.metric}["avg AUROC"]


def pct(result: dict) -> str:
    return f"{100 * result['average']['auroc']:.2f}%"


def every_parameter(bundle: Path) -> list[tuple[str, str, controls.Control]]:
    """(method, score, control) for every declared parameter but p of every method the
    bundle serves, and of every score on features combined with ash-s."""
    b = load_bundle(bundle)
    out = [(m, "energy", c) for m in offer.methods_for(b)
           for c in controls.extra_controls(m, "energy")]
    out += [("ash-s", sc, c) for sc in list_feature_scores()
            for c in controls.extra_controls("ash-s", sc)]
    return out


def test_every_declared_parameter_has_a_generated_control():
    """Registry-wide: each method's and each score's parameters are controls with the
    declaration's range, default and help; only p is the slider."""
    for m in list_methods():
        spec = get_method(m)
        made = controls.controls_for(m, "energy")
        assert [c.name for c in made] == list(spec.param_names), m
        for c, q in zip(made, spec.params, strict=True):
            assert c.main == (q.name == "p")
            assert q.contains(c.min_value) and c.max_value < q.high and c.default == q.default
            assert q.help in c.help and c.step > 0
    for sc in list_feature_scores():
        assert [c.name for c in controls.extra_controls("ash-s", sc)] == \
            [q.name for q in declared_params("ash-s", sc)][1:]


def test_each_control_gives_the_clis_numbers(bundle, capsys):
    """Each parameter away from its default, through the state a link or the control
    writes: the replayed numbers are the CLI's ``--param NAME=VALUE`` bit for bit, and they
    differ from the default's (the value is not ignored)."""
    b = load_bundle(bundle)
    ood = [s.name for s in b.ood_splits]
    cases = every_parameter(bundle)
    assert {c.name for _, _, c in cases} >= {"T", "gamma", "M", "k", "dim", "alpha",
                                            "distance"}
    for method, score, c in cases:
        value = moved(c)
        query = {"method": method, "score": score, "params": f"{c.name}:{value:g}"}
        state, notes = State.from_query(query, bundles=[str(bundle)])
        assert notes == [] and state.params == {c.name: value}, (query, notes)
        got = dash_replay.replay(b, ood, state.setting(), "exact").result.to_dict()
        args = ["--method", method, "--param", f"{c.name}={value:g}"]
        args += ["--score", score] if score != "energy" else []
        want = cli(capsys, bundle, *args)
        assert numbers(json.loads(json.dumps(got))) == numbers(want), (method, score, c.name)
        default = cli(capsys, bundle, *args[:2], *args[4:])
        assert numbers(default) != numbers(want), (method, score, c.name, "no effect")


def test_moving_a_control_in_the_page_changes_the_numbers_and_the_url(bundle, capsys):
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(bundle=str(bundle), method="gen", engine="exact")
    at.run()
    assert not at.exception and not at.error
    box = at.number_input(key="param:gen:gamma")
    assert box.value == pytest.approx(0.1) and "generalized-entropy" in box.help
    box.set_value(0.5).run()
    assert at.query_params["params"] == "gamma:0.5"
    assert shown(at) == pct(cli(capsys, bundle, "--method", "gen", "--param", "gamma=0.5"))
    assert at.selectbox(key="method").value == "gen"
    (score_box,) = [s for s in at.selectbox if s.label == "Score"]
    assert score_box.disabled and score_box.value == "gen"
    assert any("gen brings its own score" in c.value for c in at.caption)


def test_the_score_box_offers_scores_on_features_with_their_controls(bundle, capsys):
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(bundle=str(bundle), method="ash-s", p="80", engine="exact")
    at.run()
    options = at.selectbox(key="score").options  # shown with their labels (MSP, ...)
    assert len(options) == len(get_method("ash-s").scores) and set(list_feature_scores()) <= \
        set(options)
    at.selectbox(key="score").set_value("knn").run()
    at.number_input(key="param:knn:k").set_value(7).run()
    assert not at.exception and not at.error
    assert at.query_params["score"] == "knn" and at.query_params["params"] == "k:7"
    want = cli(capsys, bundle, "--method", "ash-s", "--p", "80", "--score", "knn", "--param",
               "k=7")
    assert shown(at) == pct(want)


def test_a_new_method_gets_its_control_with_no_dashboard_code(bundle, capsys, monkeypatch):
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))
    _registry.register_method(
        "toy-gain", params=(ParamSpec("gain", 1.0, 0.0, 10.0, "feature multiplier",
                                      low_open=True),),
        description="a test's toy: features times gain")(
        lambda x, *, gain, cutoff, seed, order=None: x * gain)
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(bundle=str(bundle), method="toy-gain", engine="exact")
    at.run()
    assert not at.exception and not at.error
    box = at.number_input(key="param:toy-gain:gain")
    assert "feature multiplier" in box.help
    box.set_value(3.0).run()
    assert at.query_params["params"] == "gain:3"
    assert shown(at) == pct(cli(capsys, bundle, "--method", "toy-gain", "--param", "gain=3"))
