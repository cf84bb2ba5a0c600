"""Parameter validation generated from the declarations (scikit-learn's check_param_validation).

For EVERY registered method and EVERY ``ParamSpec`` it declares, the invalid values are
derived from the declaration itself (just below an inclusive low, at an open low, at and
above high, non-integers for an integer kind, NaN, +/-Inf, strings, bools, containers)
and must be refused with a ``ParameterError`` naming the method and the parameter, on
every way in: ``ParamSpec.validate``, ``MethodSpec.validate_params``, ``create_method``,
``Setting.validated`` (alone, and for a score on features also combined with a shaping
method), and the CLI (exit status 2, one ``error:`` line). The valid values (default,
inclusive low, the largest value below high, the papers' recommended values, every
search-grid value) are accepted unchanged. Everything is parametrised over
``list_methods()``: a newly registered method is covered with no edit here.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import small_splits, write_small

from ash_core import Setting, create_method, get_method, list_methods, load_bundle
from ash_core.cli import main as cli_main
from ash_core.errors import ParameterError
from ash_core.features import get_feature_score, list_feature_scores
from ash_core.params import ParamSpec

PARAMS = [(m, q) for m in list_methods() for q in get_method(m).params]
IDS = [f"{m}-{q.name}" for m, q in PARAMS]
#: scores on features that take parameters (combined with a shaping method below)
SCORE_PARAMS = [(s, q) for s in list_feature_scores() for q in get_feature_score(s).params]
SHAPING = "ash-s"


def invalid_values(q: ParamSpec) -> list[tuple[str, object]]:
    """(why, value) pairs the declaration ``q`` must refuse, derived from its fields."""
    lo, hi = float(q.low), float(q.high)
    out: list[tuple[str, object]] = []
    if q.low_open:
        out += [("at the open low", q.low), ("at the open low, as a float", lo)]
    else:
        out += [("just below low", float(np.nextafter(lo, -math.inf)))]
    out += [
        ("one below low", lo - 1),
        ("at the exclusive high", q.high),
        ("at the exclusive high, as a float", hi),
        ("just above high", float(np.nextafter(hi, math.inf))),
        ("far above high", hi * 1e6 + 1),
        ("above high, numpy int", np.int64(int(hi) + 1)),
        ("NaN", float("nan")),
        ("NaN, float32", np.float32("nan")),
        ("+inf", math.inf),
        ("-inf", -math.inf),
        ("a numeric string", str(q.default)),
        ("a word", "abc"),
        ("True", True),
        ("False", False),
        ("numpy bool", np.bool_(True)),
        ("None", None),
        ("a list", [q.default]),
        ("a 0-d array", np.array(q.default)),
        ("complex", complex(q.default, 0)),
    ]
    if q.kind == "int":
        mid = math.floor((lo + min(hi, lo + 10)) / 2)
        out += [("an int kind, half-integer", mid + 0.5),
                ("an int kind, nearly integral", float(np.nextafter(float(q.default), math.inf))),
                ("an int kind, numpy float", np.float64(mid + 0.25))]
    return out


def valid_values(q: ParamSpec) -> list[tuple[str, float]]:
    """(why, value) pairs the declaration ``q`` must accept, unchanged."""
    lo, hi = float(q.low), float(q.high)
    out: list[tuple[str, float]] = [("default", q.default)]
    if q.low_open:
        out.append(("just above the open low",
                    lo + 1 if q.kind == "int" else float(np.nextafter(lo, math.inf))))
    else:
        out.append(("the inclusive low", q.low))
    if q.kind == "int":
        out += [("largest int below high", int(hi) - 1 if hi.is_integer() else math.floor(hi)),
                ("integral float", float(q.default)), ("numpy int", np.int64(q.default))]
    else:
        out += [("largest float below high", float(np.nextafter(hi, -math.inf))),
                ("numpy float64", np.float64(q.default)),
                ("numpy float32 of the low", np.float32(max(lo, 0.0)) if not q.low_open
                 else np.float32(lo + 1))]
    out += [(f"recommended for {k}", v) for k, v in q.recommended.items()]
    out += [(f"search grid {v:g}", v) for v in q.search_grid]
    return out


def message(method: str, q: ParamSpec) -> str:
    """The ParameterError's message must start by naming the method and the parameter."""
    return rf"^{re.escape(method)}: {re.escape(q.name)} must\b"


def test_the_generated_values_cover_what_the_brief_asks():
    """The generators are not vacuous: every declaration yields bounds, NaN, Inf, strings
    and bools, and integer kinds yield non-integers (else a new kind of bound is missed)."""
    assert PARAMS, "no registered method declares a parameter"
    kinds = {q.kind for _, q in PARAMS}
    assert kinds == {"float", "int"}, kinds
    assert any(q.low_open for _, q in PARAMS) and any(not q.low_open for _, q in PARAMS)
    for _, q in PARAMS:
        whys = {w for w, _ in invalid_values(q)}
        assert {"NaN", "+inf", "-inf", "a word", "True", "at the exclusive high"} <= whys
        assert ("at the open low" in whys) == q.low_open
        assert any(w.startswith("an int kind") for w in whys) == (q.kind == "int")
        for _, v in valid_values(q):  # the valid ones really are inside the declaration
            assert q.contains(float(v)), (q.name, v)


@pytest.mark.parametrize(("name", "q"), PARAMS, ids=IDS)
def test_invalid_values_are_refused_everywhere_naming_the_parameter(name, q):
    spec = get_method(name)
    for why, value in invalid_values(q):
        what = f"{name} {q.name}={value!r} ({why})"
        with pytest.raises(ParameterError, match=message(name, q)):
            q.validate(value, name)
            pytest.fail(f"ParamSpec.validate accepted {what}")
        with pytest.raises(ParameterError, match=message(name, q)):
            spec.validate_params({q.name: value})
            pytest.fail(f"MethodSpec.validate_params accepted {what}")
        with pytest.raises(ParameterError, match=message(name, q)):
            create_method(name, params={q.name: value})
            pytest.fail(f"create_method accepted {what}")
        with pytest.raises(ParameterError, match=message(name, q)):
            Setting(name, {q.name: value}).validated()
            pytest.fail(f"Setting.validated accepted {what}")


@pytest.mark.parametrize(("name", "q"), PARAMS, ids=IDS)
def test_one_bad_parameter_among_good_ones_is_still_refused(name, q):
    """Every other parameter at its default must not mask the bad one."""
    spec = get_method(name)
    values = {**spec.defaults, q.name: q.high}
    with pytest.raises(ParameterError, match=message(name, q)):
        Setting(name, values).validated()


@pytest.mark.parametrize(("name", "q"), PARAMS, ids=IDS)
def test_valid_values_are_accepted_unchanged(name, q):
    spec = get_method(name)
    for why, value in valid_values(q):
        what = f"{name} {q.name}={value!r} ({why})"
        got = q.validate(value, name)
        assert type(got) is float and got == float(value), what
        assert spec.validate_params({q.name: value})[q.name] == float(value), what
        shaper = create_method(name, params={q.name: value})
        assert shaper.params[q.name] == float(value), what
        assert dict(shaper.params) == {**spec.defaults, q.name: float(value)}, what
        setting = Setting(name, {q.name: value}).validated()
        assert setting.params[q.name] == float(value), what


@pytest.mark.parametrize(("score", "q"), SCORE_PARAMS, ids=[f"{s}-{q.name}" for s, q in SCORE_PARAMS])
def test_score_parameters_are_validated_when_combined_with_a_shaping_method(score, q):
    """``ash-s`` then ``knn``: the score's parameters go through the same declaration."""
    for why, value in invalid_values(q):
        with pytest.raises(ParameterError, match=rf"^score {re.escape(score)}: "
                                                 rf"{re.escape(q.name)} must\b"):
            Setting(SHAPING, {"p": 90, q.name: value}, score=score).validated()
            pytest.fail(f"{SHAPING} + {score} accepted {q.name}={value!r} ({why})")
    for _, value in valid_values(q):
        got = Setting(SHAPING, {"p": 90, q.name: value}, score=score).validated()
        assert got.params == {"p": 90.0, **{p.name: float(p.default) for p in
                                            get_feature_score(score).params},
                              q.name: float(value)}


def test_a_huge_integer_is_a_parameter_error_not_an_overflow():
    """An integer too large for a float (a JSON recipe may hold one) is out of range."""
    for name, q in PARAMS:
        with pytest.raises(ParameterError, match=message(name, q)):
            create_method(name, params={q.name: 10**400})
        with pytest.raises(ParameterError, match=message(name, q)):
            create_method(name, params={q.name: -(10**400)})


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 64 id_fit rows: enough for every default (knn's k=50 neighbours)
    return write_small(tmp_path_factory.mktemp("params") / "tiny", splits=small_splits(n=64))


def cli_value(q: ParamSpec) -> str:
    """One invalid value per parameter, as typed on the command line: the exclusive high
    (a float for a float kind, a non-integer for an integer kind)."""
    if q.kind == "int":
        return f"{q.low + 0.5:g}" if not q.low_open else f"{q.low:g}"
    return f"{q.high:g}"


@pytest.mark.parametrize(("name", "q"), PARAMS, ids=IDS)
def test_cli_refuses_an_invalid_value_in_one_line(name, q, bundle, capsys):
    value = cli_value(q)
    with pytest.raises(ParameterError):  # the value typed is invalid by the declaration
        q.validate(float(value), name)
    rc = cli_main(["evaluate", str(bundle), "--method", name, "--param", f"{q.name}={value}"])
    out, err = capsys.readouterr()
    assert rc == 2, (name, q.name, value, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.match(rf"error: {re.escape(name)}: {re.escape(q.name)} must\b", lines[0]), err
    assert q.range_text in lines[0], err
    assert out == ""


@pytest.mark.parametrize(("name", "q"), PARAMS, ids=IDS)
def test_cli_accepts_the_default_and_echoes_it(name, q, bundle, capsys):
    """The same command with the declared default runs: the refusal above is the value's."""
    assert get_method(name).unavailable(load_bundle(bundle)) == ""
    rc = cli_main(["evaluate", str(bundle), "--method", name, "--param",
                   f"{q.name}={q.default!r}", "--format", "json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert json.loads(out)["params"][q.name] == float(q.default)
