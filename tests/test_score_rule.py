"""Which score a method takes (one rule, ``ash_core.setting``), the CLI's refusal of a score a
method cannot take, and the baselines under their own names (energy, msp, maxlogit).

Enumerates the registry: every method that scores itself is refused every other score, so a
new method is covered without touching this file.
"""

from __future__ import annotations

import json

import pytest

from ash_core import Evaluator, Setting, get_method, list_methods, load_bundle
from ash_core.cli import main
from ash_core.errors import ParameterError
from ash_core.features import list_feature_scores
from ash_core.maths.scores import list_scores
from ash_core.policy import choose_engine
from ash_core.setting import declared_params, own_score_reason, resolve_score

ALL_SCORES = [*list_scores(), *list_feature_scores()]
SELF_SCORING = [m for m in list_methods() if get_method(m).own_score is not None]
TAKERS = [m for m in list_methods() if get_method(m).own_score is None]
REFUSED = [(m, s) for m in SELF_SCORING for s in ALL_SCORES if s != get_method(m).own_score]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_the_rule_splits_the_registry():
    """Both kinds exist (the enumerations below are not vacuous), and a method that takes a
    score takes every score on logits and on features."""
    assert {"gen", "knn", "msp", "odin"} <= set(SELF_SCORING)
    assert {"none", "ash-s", "react", "dice"} <= set(TAKERS)
    for m in TAKERS:
        assert own_score_reason(m) == ""
        assert [resolve_score(m, s) for s in ALL_SCORES] == ALL_SCORES
        assert resolve_score(m, None) == "energy"


@pytest.mark.parametrize("method", SELF_SCORING)
def test_a_method_that_scores_itself_defaults_to_its_own(method):
    own = get_method(method).own_score
    assert resolve_score(method, None) == own == resolve_score(method, own)
    assert Setting(method).validated().score == own


@pytest.mark.parametrize(("method", "score"), REFUSED, ids=[f"{m}+{s}" for m, s in REFUSED])
def test_cli_refuses_a_score_the_method_cannot_take(capsys, synthetic_bundle, method, score):
    """``--method knn --score msp`` was silently knn's numbers: now exit 2, naming what
    applies, before the bundle is read (nothing on stdout)."""
    rc, out, err = run(capsys, "evaluate", synthetic_bundle, "--method", method, "--score",
                       score, "--format", "json")
    assert rc == 2 and out == ""
    assert f"--score {score} does not apply to --method {method}" in err
    assert "the methods that take a score: " + ", ".join(TAKERS) in err


def test_sweep_refuses_a_score_one_of_its_methods_cannot_take(capsys, synthetic_bundle):
    rc, out, err = run(capsys, "sweep", synthetic_bundle, "--methods", "ash-s,gen", "--score",
                       "msp", "--p", "80,90")
    assert rc == 2 and out == "" and "does not apply to --method gen" in err


@pytest.mark.parametrize("name", ["energy", "msp", "maxlogit"])
def test_baselines_answer_to_their_own_names(capsys, synthetic_bundle, name):
    """``--method msp`` is ``--method none --score msp`` bit for bit (the same code path),
    and none's numbers under that score are what they were (the Evaluator's)."""
    rc, out, err = run(capsys, "evaluate", synthetic_bundle, "--method", name, "--format",
                       "json")
    assert rc == 0, err
    named = json.loads(out)
    rc, out, err = run(capsys, "evaluate", synthetic_bundle, "--method", "none", "--score",
                       name, "--format", "json")
    assert rc == 0, err
    none = json.loads(out)
    assert named["score"] == none["score"] == name and named["method"] == name
    for key in ("ood", "average", "id_accuracy"):
        assert named[key] == none[key], key
    direct = Evaluator(load_bundle(synthetic_bundle)).evaluate(Setting("none", score=name))
    assert json.loads(json.dumps(direct.to_dict()))["ood"] == none["ood"]
    rc, _, err = run(capsys, "evaluate", synthetic_bundle, "--method", name, "--score",
                     "energy" if name != "energy" else "msp")
    assert rc == 2 and "is the unshaped baseline" in err


def test_declared_params_are_the_methods_and_the_feature_scores():
    assert [q.name for q in declared_params("ash-s", "knn")] == ["p", "k"]
    assert [q.name for q in declared_params("ash-s", "msp")] == ["p"]
    assert [q.name for q in declared_params("knn", "vim")] == ["k"]  # knn scores itself
    assert [q.name for q in declared_params("gen", "knn")] == ["gamma", "M"]


def test_a_score_on_features_is_served_exactly(synthetic_bundle):
    """The cube holds scores on logits: a shaping method with a score on features is exact,
    and asking for the cube says why."""
    ev = Evaluator(load_bundle(synthetic_bundle))
    assert choose_engine(ev, "ash-s", p=90.0, score="energy").engine in ("exact", "cube")
    choice = choose_engine(ev, "ash-s", p=90.0, score="knn")
    assert choice.engine == "exact" and "score knn is fitted" in choice.reason
    with pytest.raises(ParameterError, match="score knn is fitted"):
        choose_engine(ev, "ash-s", requested="cube", p=90.0, score="knn")


def test_a_score_on_features_reports_its_progress_split_by_split(synthetic_bundle):
    """The slow exact path (a score on features, fitted then applied split by split) tells
    a progress bar of each split; the numbers are those of the call without it."""
    ev = Evaluator(load_bundle(synthetic_bundle))
    calls: list[tuple[int, int]] = []
    setting = Setting("ash-s", {"p": 80, "k": 5}, score="knn")
    got = ev.evaluate(setting, progress=lambda done, total: calls.append((done, total)))
    n = len(ev.split_names)
    assert calls == [(i, n) for i in range(1, n + 1)]
    assert got.to_dict() == ev.evaluate(setting).to_dict()
