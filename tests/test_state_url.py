"""The dashboard's URL round trip over EVERY field of ``State``, enumerated from the dataclass.

For each field of ``dataclasses.fields(State)`` a generator gives every non-default value
worth trying (all the field's options: VIEWS, CURVE_KINDS, COMPARE_MODES, ENGINES,
PARETO_METRICS, registered methods, a bundle and OOD sets from what ``from_query`` is told
is available, ...), with the other fields it needs to be consistent (a global ``bthreshold``
needs a ``bmethod`` with a global mode). ``State.from_query(state.to_query())`` must give back
the same state, compact or not. A field without a generator fails
``test_every_field_has_a_generator``: nobody can add a field and skip it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

import pytest

from ash_core import CONVENTIONS, THRESHOLD_MODES, get_method, list_methods, list_scores
from ash_core.features import list_feature_scores
from ash_core.setting import declared_params
from dashboard.controls import extra_controls
from dashboard.op_state import DEFAULT_OP, format_op, parse_op
from dashboard.state import (
    COMPARE_MODES,
    CURVE_KINDS,
    ENGINES,
    GRID_STEPS,
    INSPECT_MODES,
    MAX_OVERLAY,
    PARETO_METRICS,
    VIEWS,
    State,
    p_range,
)

#: what ``from_query`` is told is available (its ``bundles`` and ``ood_options``)
BUNDLES = ("demo/one", "demo/two")
OOD_OPTIONS = ("far", "near", "textures")
DEFAULT = State()

Changes = dict[str, Any]


def others(options, default) -> list:
    """Every option but the default (the default would not test the reading back)."""
    return [o for o in options if o != default]


def _p_values(method: str) -> list[int]:
    low, high = p_range(method)
    return sorted({low, low + 1, (low + high) // 2, high - 1, high})


def _global_methods() -> list[str]:
    return [m for m in list_methods() if "global" in get_method(m).threshold_modes]


def _ood() -> list[Changes]:
    return [{"ood": (OOD_OPTIONS[1],)}, {"ood": OOD_OPTIONS[::-1]}, {"ood": ()}]


def _method() -> list[Changes]:
    # every method, with a p inside its own range that is not the method's default
    out = []
    for m in others(list_methods(), DEFAULT.method):
        low, high = p_range(m)
        out.append({"method": m, "p": low if get_method(m).default_p != low else high})
    return out


def _p() -> list[Changes]:
    return [{"method": m, "p": p} for m in (DEFAULT.method, "none", *_global_methods()[:1])
            for p in _p_values(m) if (m, p) != (DEFAULT.method, DEFAULT.p)]


def _threshold() -> list[Changes]:
    return [{"method": m, "threshold": t} for t in others(THRESHOLD_MODES, DEFAULT.threshold)
            for m in list_methods() if t in get_method(m).threshold_modes]


def _bmethod() -> list[Changes]:
    return [{"bmethod": m} for m in others(list_methods(), DEFAULT.bmethod)]


def _bp() -> list[Changes]:
    return [{"bmethod": m, "bp": p} for m in ("none", "ash-b", "react")
            for p in _p_values(m) if (m, p) != (DEFAULT.bmethod, DEFAULT.bp)]


def _bthreshold() -> list[Changes]:
    return [{"bmethod": m, "bthreshold": t} for t in others(THRESHOLD_MODES, DEFAULT.bthreshold)
            for m in _global_methods()]


def _cmethods() -> list[Changes]:
    methods = list_methods()
    return [{"cmethods": (methods[1],)}, {"cmethods": tuple(methods[:MAX_OVERLAY])},
            {"cmethods": tuple(methods[-MAX_OVERLAY:][::-1])}]


def other_value(c) -> float:
    """A valid value of a control other than its default (from the search grid when it has
    one, else a step up or down)."""
    q = next(q for q in declared_params(c.owner if not c.of_score else "ash-s", c.owner)
             if q.name == c.name)
    grid = [float(v) for v in q.search_grid if v != q.default]
    if grid:
        return grid[-1]
    up = q.default + c.step
    return up if q.contains(up) else q.default - c.step


def _params() -> list[Changes]:
    """Every declared parameter of every method (and of every score on features, with
    ash-s), each away from its default: enumerated from the registry."""
    out = []
    for m in list_methods():
        for c in extra_controls(m, "energy"):
            out.append({"method": m, "params": {c.name: other_value(c)}})
    for score in list_feature_scores():
        for c in extra_controls("ash-s", score):
            out.append({"score": score, "params": {c.name: other_value(c)}})
    return out


def choices(name: str, options) -> Callable[[], list[Changes]]:
    return lambda: [{name: v} for v in others(options, getattr(DEFAULT, name))]


#: field -> every non-default value to try (with the fields it needs to be consistent)
GENERATORS: dict[str, Callable[[], list[Changes]]] = {
    "bundle": lambda: [{"bundle": b} for b in BUNDLES[1:]],
    "ood": _ood,
    "method": _method,
    "p": _p,
    "threshold": _threshold,
    "score": choices("score", [*list_scores(), *list_feature_scores()]),
    "params": _params,
    "convention": choices("convention", list(CONVENTIONS)),
    "view": choices("view", list(VIEWS)),
    "engine": choices("engine", list(ENGINES)),
    "val": lambda: [{"val": 1}],
    "layer": lambda: [{"layer": "layer3"}, {"layer": "blocks.11.mlp"}],
    "iset": lambda: [{"iset": OOD_OPTIONS[0]}, {"iset": "id_test"}],
    "idx": lambda: [{"idx": 1}, {"idx": 4321}, {"idx": 10**9}],
    "imode": choices("imode", list(INSPECT_MODES)),
    "curve": choices("curve", list(CURVE_KINDS)),
    "op": lambda: [{"op": "kept:90"}, {"op": "kept:100"}, {"op": "score:-3.25"},
                   {"op": "score:0.1"}],
    "step": choices("step", GRID_STEPS),
    "pareto": choices("pareto", list(PARETO_METRICS)),
    "cmode": choices("cmode", list(COMPARE_MODES)),
    "bmethod": _bmethod,
    "bp": _bp,
    "bthreshold": _bthreshold,
    "bbundle": lambda: [{"bbundle": b} for b in BUNDLES],
    "cmethods": _cmethods,
}

CASES = [(name, changes) for name, gen in GENERATORS.items() for changes in gen()]


def base() -> State:
    """The state a link with only its bundle opens: the first available bundle."""
    return State(bundle=BUNDLES[0])


def round_trip(state: State, compact: bool) -> tuple[State, list[str]]:
    return State.from_query(state.to_query(compact=compact), bundles=BUNDLES,
                            ood_options=OOD_OPTIONS)


def test_every_field_has_a_generator():
    names = [f.name for f in fields(State)]
    missing = [n for n in names if n not in GENERATORS]
    assert not missing, f"State field(s) without a non-default value generator: {missing}"
    assert set(GENERATORS) <= set(names), set(GENERATORS) - set(names)


@pytest.mark.parametrize("name", [f.name for f in fields(State)])
def test_every_field_gets_non_default_values(name):
    """Each generator changes its own field to a value other than the default, so the
    round trip really tests that the field is read back."""
    changes = GENERATORS[name]()
    assert changes, f"no value generated for {name}"
    for c in changes:
        assert name in c and c[name] != getattr(base(), name), (name, c)


@pytest.mark.parametrize("compact", [True, False], ids=["compact", "full"])
@pytest.mark.parametrize(("name", "changes"), CASES,
                         ids=[f"{n}={'+'.join(map(str, c.values()))}" for n, c in CASES])
def test_each_field_round_trips_through_the_url(name, changes, compact):
    state = replace(base(), **changes)
    assert state.validated() == state, ("the generated state is inconsistent", changes)
    q = state.to_query(compact=compact)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in q.items())
    back, notes = round_trip(state, compact)
    assert notes == [], notes
    assert getattr(back, name) == getattr(state, name), (name, q)
    assert back == state, (changes, q)


def test_all_fields_at_once_round_trip():
    """One state with every field away from its default (the last value of each generator,
    applied in field order, with its companions)."""
    state = base()
    for f in fields(State):
        state = replace(state, **GENERATORS[f.name]()[-1])
    # companions may have reset an earlier field: put one non-default value back per field
    state = replace(state, method="ash-b", p=72, threshold="global", bmethod="ash-p", bp=3,
                    bthreshold="global")
    changed = [f.name for f in fields(State) if getattr(state, f.name) == getattr(DEFAULT, f.name)]
    assert changed == [], f"fields left at their default: {changed}"
    for compact in (True, False):
        back, notes = round_trip(state, compact)
        assert notes == [] and back == state, [
            (f.name, getattr(back, f.name), getattr(state, f.name)) for f in fields(State)
            if getattr(back, f.name) != getattr(state, f.name)]


def test_a_compact_url_leaves_out_exactly_the_defaults():
    """compact=True drops a field at its default (except the always-shown ones); a field
    away from its default is always written."""
    full = base().to_query(compact=False)
    assert set(full) == {f.name for f in fields(State)} - {"ood"}
    for name, changes in CASES:
        q = replace(base(), **changes).to_query(compact=True)
        assert name in q, (name, changes)


@pytest.mark.parametrize("bad", ["kept:0", "kept:100.5", "score:nan", "score:inf", "kept",
                                 "tpr:95", "kept:abc", "score:"])
def test_a_bad_operating_point_falls_back_with_a_note(bad):
    state, notes = State.from_query({"op": bad}, bundles=BUNDLES, ood_options=OOD_OPTIONS)
    assert state.op == DEFAULT_OP
    assert any(n.startswith("ignored op=") for n in notes), notes


@pytest.mark.parametrize("value", [95.0, 0.1, -3.2500001, 1e-7, 12345.678])
def test_an_operating_point_value_reads_back_exactly(value):
    assert parse_op(format_op("score", value)) == ("score", value)


@pytest.mark.parametrize(("text", "words"), [
    ("M:abc", "M must be a number in [1, 100001)"),
    ("M:0", "M must be in [1, 100001)"),
    ("M:2.5", "M must be an integer"),
    ("k:3", "gen with score energy takes: gamma, M"),
    ("M", "written NAME:VALUE"),
])
def test_a_bad_parameter_in_a_link_falls_back_with_a_note(text, words):
    """Like p: a value the declaration refuses is dropped (its default is used), with a note
    saying why; the valid ones are kept."""
    state, notes = State.from_query({"method": "gen", "params": f"{text},gamma:0.5"},
                                    bundles=BUNDLES)
    assert any(words in n for n in notes), notes
    assert state.params == {"gamma": 0.5}
    assert state.setting().params == {"gamma": 0.5}
