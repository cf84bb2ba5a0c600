"""Setting: the one description of an evaluated setting, its validation, label and JSON."""

from __future__ import annotations

import json

import pytest

from ash_core import Evaluator, Setting, create_method, evaluate, load_bundle
from ash_core.errors import ParameterError
from ash_core.sweep import sweep_settings


def test_validated_fills_defaults_and_keeps_the_rest():
    s = Setting("ash-s").validated()
    assert s == Setting("ash-s", {"p": 65.0}, "local", "energy", "id", 0)
    assert Setting("react", {"p": 95}).validated().params == {"p": 95.0}
    assert Setting("none").validated().params == {}


@pytest.mark.parametrize(
    ("setting", "match"),
    [
        (Setting("ash-x"), "unknown method 'ash-x'"),
        (Setting("ash-s", {"p": 100}), r"ash-s: p must be in \[0, 100\)"),
        (Setting("ash-s", {"q": 1}), "ash-s: unknown parameter 'q'"),
        (Setting("scale", {}, "global"), "supports threshold mode"),
        (Setting("ash-s", {}, 0.5), "unknown threshold mode"),
        (Setting("ash-s", {}, "local", "odin"), "unknown score 'odin'"),
        (Setting("ash-s", {}, "local", "energy", "both"), "unknown FPR convention"),
        (Setting("ash-rand", {}, "local", "energy", "id", 1.5), "seed must be an integer"),
    ],
)
def test_validated_refuses_each_bad_field(setting, match):
    with pytest.raises(ParameterError, match=match):
        setting.validated()


def test_label_is_the_one_label():
    assert Setting("ash-s", {"p": 90}).label() == "ash-s p=90 local"
    assert Setting("ash-b", {"p": 85}, "global").label() == "ash-b p=85 global"
    assert Setting("react", {"p": 90}).label() == "react p=90"  # no mode choice: not shown
    assert Setting("none").label() == "none"
    assert Setting("ash-s", {"p": 90}, "local", "msp", "ood").label(detail=True) == \
        "ash-s p=90, threshold=local, score=msp, FPR convention=ood (OOD positive)"
    for s in (Setting("ash-s", {"p": 90}, "global"), Setting("scale", {"p": 80})):
        assert s.shaper().describe() == s.label()


def test_frozen_hashable_and_json_round_trip():
    s = Setting("ash-s", {"p": 90}, "global", "msp", "ood", 7)
    with pytest.raises(AttributeError):
        s.method = "ash-b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.params["p"] = 1  # type: ignore[index]
    assert hash(s) == hash(Setting("ash-s", {"p": 90.0}, "global", "msp", "ood", 7))
    assert len({s, Setting("ash-s", {"p": 90}, "global", "msp", "ood", 7)}) == 1
    d = json.loads(json.dumps(s.to_dict()))
    assert d == {"method": "ash-s", "params": {"p": 90}, "threshold": "global", "score": "msp",
                 "fpr_convention": "ood", "seed": 7}
    assert Setting.from_dict(d) == s
    assert s.with_params(p=60).p == 60 and s.p == 90


def test_evaluate_takes_a_setting(synthetic_bundle):
    ev = Evaluator(load_bundle(synthetic_bundle), warn=False)
    s = Setting("ash-b", {"p": 80}, "global", "maxlogit", "ood", 0)
    by_setting = ev.evaluate(s).to_dict()
    assert by_setting == evaluate(load_bundle(synthetic_bundle), s).to_dict()
    assert by_setting["params"] == {"p": 80.0} and by_setting["label"] == "ash-b p=80 global"
    assert ev.evaluate(s).setting == s.validated()
    assert by_setting != ev.evaluate(s.with_params(p=60)).to_dict()


def test_sweep_settings_in_row_order():
    got = sweep_settings(["ash-s", "none", "scale"], [60, 90], "global", "msp", "id", 1)
    assert [g.label() for g in got] == ["ash-s p=60 global", "ash-s p=90 global", "none",
                                        "scale p=60", "scale p=90"]
    assert {g.score for g in got} == {"msp"} and {g.seed for g in got} == {1}
    with pytest.raises(ParameterError, match="no methods to sweep"):
        sweep_settings([], [60])
    with pytest.raises(ParameterError, match="p is the swept parameter"):
        sweep_settings(["ash-s"], [60], params={"ash-s": {"p": 3}})


def test_create_method_and_setting_agree_on_defaults():
    for name in ("ash-p", "react", "scale", "none"):
        assert dict(create_method(name).params) == dict(Setting(name).validated().params)
