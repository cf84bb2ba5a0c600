"""The registry and the contract EVERY registered method must meet.

The contract tests are parametrised over ``list_methods()`` and each method's threshold
modes, so a newly registered method is covered without touching this file.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import reference as ref
import torch

from ash_core import (
    THRESHOLD_MODES,
    MethodSpec,
    ParamSpec,
    Shaper,
    create_method,
    get_method,
    list_methods,
    register_method,
)
from ash_core.errors import ParameterError
from ash_core.maths.shaping import rank_order

EXPECTED = ["none", "energy", "msp", "maxlogit", "ash-p", "ash-b", "ash-s", "ash-rand", "react", "scale"]
DTYPES = [torch.float16, torch.bfloat16, torch.float32]

SETTINGS = [(m, mode) for m in list_methods() for mode in get_method(m).threshold_modes]
IDS = [f"{m}-{mode}" for m, mode in SETTINGS]


def p_values(name: str) -> list[float | None]:
    spec = get_method(name)
    return [0.0, spec.default_p, 50.0, 99.9] if spec.has_p else [None]


def data(n: int = 8, c: int = 4, h: int = 3, w: int = 3, seed: int = 0) -> torch.Tensor:
    """[n, c, h, w] post-ReLU-like values with ties, zeros, a constant and an all-zero row."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g).clamp_min(0)
    x[:, :, 0, :] = torch.round(x[:, :, 0, :] * 2) / 2  # ties
    x[1] = 0.0         # all-zero row
    x[2] = 1.5         # constant row
    x[3, :2] = x[3, 2:]  # duplicated units
    return x


ID_FIT = data(64, seed=123).reshape(64, -1)
#: a linear head over the 36 units, for methods fitted on it (DICE)
HEAD = (torch.randn(5, 36, generator=torch.Generator().manual_seed(1)), torch.zeros(5))


def make(name: str, mode: str, p: float | None, seed: int = 0) -> Shaper:
    shaper = create_method(name, p=p, threshold_mode=mode, seed=seed)
    if shaper.needs_fit:
        shaper.fit(ID_FIT, head=HEAD)
        assert shaper.cutoff is not None and np.isfinite(shaper.cutoff)
    return shaper


# --------------------------------------------------------------------------- registry


def test_registry_lists_the_issue_methods():
    names = list_methods()
    assert names[: len(EXPECTED)] == EXPECTED
    assert len(set(names)) == len(names)
    assert set(list_methods("ash")) == {"ash-p", "ash-b", "ash-s", "ash-rand"}


@pytest.mark.parametrize("name", list_methods())
def test_spec_is_complete(name):
    spec = get_method(name)
    assert isinstance(spec, MethodSpec) and spec.name == name and spec.description
    assert spec.threshold_modes and set(spec.threshold_modes) <= set(THRESHOLD_MODES)
    for param in spec.params:
        assert param.low <= param.default < param.high
        assert param.validate(param.default, name) == param.default
    shaper = create_method(name)
    assert shaper.p == spec.default_p
    assert shaper.describe().startswith(name)


def test_defaults_of_the_issue():
    assert get_method("react").default_p == 90.0
    assert get_method("none").has_p is False and create_method("none", p=None).p is None
    assert get_method("ash-rand").stochastic
    for name in ("ash-p", "ash-b", "ash-s", "ash-rand"):
        assert set(get_method(name).threshold_modes) == {"local", "global"}


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ParameterError, match=r"unknown method 'ash-x'.*ash-p, ash-b"):
        get_method("ash-x")
    with pytest.raises(ParameterError, match="unknown method"):
        create_method("ash-x")


@pytest.mark.parametrize("name", [m for m in list_methods() if get_method(m).has_p])
@pytest.mark.parametrize("p", [-1, 100, 100.5, float("nan"), float("inf"), "x"])
def test_create_rejects_bad_p(name, p):
    with pytest.raises(ParameterError, match=rf"{name}: p must be"):
        create_method(name, p=p)


def test_threshold_modes_are_validated():
    with pytest.raises(ParameterError, match="unknown threshold mode 'median'"):
        create_method("ash-s", threshold_mode="median")
    with pytest.raises(ParameterError, match="supports threshold mode"):
        create_method("scale", threshold_mode="global")


@pytest.mark.parametrize(("name", "mode"), [s for s in SETTINGS if create_method(s[0], threshold_mode=s[1]).needs_fit])
def test_unfitted_shaper_says_fit_first(name, mode):
    shaper = create_method(name, threshold_mode=mode)
    with pytest.raises(ParameterError, match=r"id_fit.*\.fit\("):
        shaper(data())


def test_register_rejects_duplicates_and_unknown_modes():
    with pytest.raises(ValueError, match="already registered"):
        register_method("ash-p", description="dup")(lambda x, **k: x)
    with pytest.raises(ValueError, match="unknown threshold mode"):
        register_method("ash-new", description="x", threshold_modes=("median",))(lambda x, **k: x)
    assert "ash-new" not in list_methods()


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize(("name", "mode"), SETTINGS, ids=IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_contract_shape_dtype_and_no_mutation(name, mode, dtype):
    for p in p_values(name):
        shaper = make(name, mode, p)
        for x in (data().to(dtype), data().reshape(8, -1).to(dtype)):
            before = x.clone()
            out = shaper(x)
            assert out.shape == x.shape and out.dtype == dtype, (name, p)
            assert torch.equal(x, before), f"{name} modified its input"
            assert out.data_ptr() != x.data_ptr()
            assert torch.isfinite(out.float()).all(), (name, p)
            out.zero_()
            assert torch.equal(x, before), f"{name} returned a view of its input"


@pytest.mark.parametrize(("name", "mode"), SETTINGS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_contract_low_precision_matches_fp32_maths(name, mode, dtype):
    x = data().to(dtype)
    for p in p_values(name):
        shaper = make(name, mode, p, seed=4)
        expected = shaper(x.float()).to(dtype)
        torch.testing.assert_close(shaper(x).float(), expected.float(), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize(("name", "mode"), SETTINGS, ids=IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_contract_fit_accepts_every_dtype(name, mode, dtype):
    for p in p_values(name):
        shaper = create_method(name, p=p, threshold_mode=mode)
        if shaper.needs_fit:
            fitted = shaper.fit(ID_FIT.to(dtype), head=HEAD).cutoff
            expected = make(name, mode, p).cutoff
            assert fitted == pytest.approx(expected, rel=1e-2, abs=1e-2)
            assert shaper(data().to(dtype)).dtype == dtype
        else:
            assert shaper.fit(ID_FIT.to(dtype), head=HEAD).cutoff is None


@pytest.mark.parametrize(("name", "mode"), SETTINGS, ids=IDS)
def test_contract_deterministic_with_a_seed(name, mode):
    x = data()
    for p in p_values(name):
        a = make(name, mode, p, seed=7)(x)
        b = make(name, mode, p, seed=7)(x)
        assert torch.equal(a, b)
    if get_method(name).stochastic:
        p = get_method(name).default_p
        assert not torch.equal(make(name, mode, p, seed=7)(x), make(name, mode, p, seed=8)(x))


@pytest.mark.parametrize(("name", "mode"), SETTINGS, ids=IDS)
def test_contract_4d_equals_2d_on_flattened_input(name, mode):
    x = data()
    for p in p_values(name):
        shaper = make(name, mode, p, seed=3)
        assert torch.equal(shaper(x).reshape(8, -1), shaper(x.reshape(8, -1))), (name, p)


#: only the values 1, 2, 3 over 12 units: ties at every kept-count boundary, no zeros
TIED = torch.from_numpy(np.random.default_rng(9).integers(1, 4, size=(6, 12)).astype(np.float32))


def test_tied_data_really_ties_at_the_boundary():
    for p in (50.0, 65.0):
        k = ref.kept_count(12, p)
        ranked = np.sort(TIED.numpy(), axis=1)[:, ::-1]
        assert (ranked[:, k - 1] == ranked[:, k]).any(), p


@pytest.mark.parametrize(("name", "mode"), SETTINGS, ids=IDS)
def test_contract_ties_go_to_the_lower_unit_index(name, mode):
    """The documented tie rule (exactly k survivors, lower unit index first), against the
    independent reference: its per-method output, or for a stochastic method the
    reference survivor mask."""
    spec = get_method(name)
    x = TIED.numpy()
    for p in p_values(name):
        shaper = make(name, mode, p, seed=5)
        out = shaper(TIED).numpy()
        if spec.stochastic:
            mask = ref.survivors(x, p, shaper.cutoff)
            np.testing.assert_array_equal(out != 0, mask, err_msg=f"{name} p={p}")
        else:
            want = ref.shape(name, x, p, mode, ID_FIT.numpy())
            np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6, err_msg=f"{name} p={p}")


@pytest.mark.parametrize(("name", "mode"), SETTINGS, ids=IDS)
def test_contract_constant_and_zero_rows(name, mode):
    constant = torch.full((4, 36), 1.5)
    zero = torch.zeros(4, 36)
    stochastic = get_method(name).stochastic
    for p in p_values(name):
        shaper = make(name, mode, p)
        for x in (constant, zero):
            out = shaper(x)
            assert torch.isfinite(out).all()
            if not stochastic:  # identical rows shape identically
                assert torch.equal(out, out[:1].expand_as(out)), (name, p)
        if not stochastic:
            # a row without activation stays without activation
            assert torch.equal(shaper(zero), zero), (name, p)


@pytest.mark.parametrize(("name", "mode"), SETTINGS, ids=IDS)
def test_contract_rows_are_shaped_independently(name, mode):
    x = data().reshape(8, -1)
    for p in p_values(name):
        shaper = make(name, mode, p)
        full = shaper(x)
        for i in (0, 3, 7):
            row = shaper(x[i : i + 1])
            if get_method(name).stochastic:  # draws depend on the batch; survivors must not
                assert torch.equal(row != 0, full[i : i + 1] != 0), (name, p)
            else:
                assert torch.equal(row, full[i : i + 1]), (name, p)


@pytest.mark.parametrize(("name", "mode"), SETTINGS, ids=IDS)
def test_contract_row_blocks_equal_the_whole_call(name, mode):
    """``Shaper.blocks`` (how the Evaluator shapes a large split without holding it whole)
    gives the slices of one call on the whole batch, bit for bit: ranked or not, and for a
    stochastic method the same draws (each row drawn from its own stream)."""
    x = data(11).reshape(11, -1)
    order = rank_order(x)
    for p in p_values(name):
        shaper = make(name, mode, p, seed=7)
        for rows in (1, 3, 4, 11, 50):
            for given in (None, order):
                whole = shaper(x, order=given)
                blocks = list(shaper.blocks(x, rows, order=given))
                assert [b.shape[0] for b in blocks[:-1]] == [rows] * (len(blocks) - 1)
                assert torch.equal(torch.cat(blocks), whole), (name, p, rows)


def test_row_blocks_refuse_a_block_without_rows():
    with pytest.raises(ParameterError, match="rows per block must be >= 1"):
        next(create_method("ash-s").blocks(torch.ones(2, 4), 0))


@pytest.mark.parametrize(("name", "mode"), SETTINGS, ids=IDS)
def test_contract_p_extremes(name, mode):
    """p = 0 local: ASH-P/none are the identity; p = 99.9 on D=36 keeps no unit."""
    x = data().reshape(8, -1)
    spec = get_method(name)
    if name in ("none", "ash-p") and mode == "local":
        assert torch.equal(make(name, mode, 0.0 if spec.has_p else None)(x), x)
    if spec.family == "ash" and mode == "local":
        assert torch.equal(make(name, mode, 99.9)(x), torch.zeros_like(x))
    out = make(name, mode, 99.9 if spec.has_p else None)(x)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "mode"), SETTINGS, ids=IDS)
def test_contract_precomputed_rank_order_changes_nothing(name, mode):
    """Every method accepts order=rank_order(x) and gives bit-identical results with it."""
    from ash_core.maths.shaping import rank_order

    x = data()
    order = rank_order(x)
    for p in p_values(name):
        shaper = make(name, mode, p, seed=3)
        assert torch.equal(shaper(x, order=order), shaper(x))
    assert torch.equal(order.long(), torch.sort(x.reshape(len(x), -1), dim=1, descending=True,
                                                stable=True).indices)


def test_rank_order_of_other_features_is_refused():
    from ash_core.errors import FeatureError
    from ash_core.maths.shaping import ash_p, rank_order

    x = data()
    with pytest.raises(FeatureError, match="rank_order"):
        ash_p(x, 50, order=rank_order(x[:3]))


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1, 1.5, "7", True, None])
def test_bad_seed_is_a_parameter_error(seed):
    # regression: a seed beyond 64 bits crashed `evaluate --seed` with torch's ValueError
    with pytest.raises(ParameterError, match="seed must be an integer"):
        create_method("ash-rand", 65, seed=seed)


@pytest.mark.parametrize("seed", [0, -5, 2**63, 2**64 - 1, np.int64(3)])
def test_every_64_bit_seed_is_accepted(seed):
    shaper = create_method("ash-rand", 65, seed=seed)
    assert shaper.seed == int(seed) and shaper(data()).shape == data().shape


# --------------------------------------------------------------------------- parameters

PARAMS = [(m, q) for m in list_methods() for q in get_method(m).params]
PARAM_IDS = [f"{m}-{q.name}" for m, q in PARAMS]


def bad_values(q: ParamSpec) -> list:
    """Values every declaration must refuse: below low (at low when open), at high, NaN,
    Inf, and wrong kinds."""
    values = [q.low if q.low_open else q.low - 1, q.high, float("nan"), float("inf"),
              "50", None, True, [q.default]]
    if q.kind == "int":
        values.append(q.default + 0.5)
    return values


@pytest.mark.parametrize(("name", "q"), PARAMS, ids=PARAM_IDS)
def test_param_declaration_is_sound(name, q):
    assert q.kind in ("float", "int") and q.low < q.high and q.help
    for value in (q.default, *q.recommended.values(), *q.search_grid):
        assert q.validate(value, name) == value, value  # in range and of the right kind
    assert list(q.search_grid) == sorted(set(q.search_grid))
    assert create_method(name, params={q.name: q.default}).params[q.name] == q.default
    assert get_method(name).main_param in get_method(name).param_names


@pytest.mark.parametrize(("name", "q"), PARAMS, ids=PARAM_IDS)
def test_param_range_and_kind_are_enforced(name, q):
    for value in bad_values(q):
        with pytest.raises(ParameterError, match=rf"^{name}: {q.name} must .*{re.escape(q.range_text)}"):
            create_method(name, params={q.name: value})


@pytest.mark.parametrize(("name", "q"), PARAMS, ids=PARAM_IDS)
def test_every_grid_value_shapes_without_mutation_and_deterministically(name, q):
    spec = get_method(name)
    for mode in spec.threshold_modes:
        for value in q.search_grid or (q.default,):
            given = {q.name: value}
            shaper = create_method(name, params=given, threshold_mode=mode, seed=3)
            assert given == {q.name: value}  # the caller's mapping is not touched
            if shaper.needs_fit:
                shaper.fit(ID_FIT, head=HEAD)
            x = data()
            before = x.clone()
            out = shaper(x)
            assert torch.equal(x, before), (name, value)
            if not spec.stochastic:
                again = create_method(name, params=given, threshold_mode=mode, seed=4)
                again.fit(ID_FIT, head=HEAD)
                assert torch.equal(out, again(x)), (name, value)


def test_unknown_parameters_name_the_valid_ones():
    with pytest.raises(ParameterError, match=r"^ash-s: unknown parameter 'q'; its parameters are: p\."):
        create_method("ash-s", params={"q": 1})
    with pytest.raises(ParameterError, match=r"^none: unknown parameter 'p'; it takes no parameters"):
        create_method("none", p=50)
    with pytest.raises(ParameterError, match="p is given twice"):
        create_method("ash-s", p=50, params={"p": 60})
    assert create_method("ash-s", p=50, params={"p": 50}).p == 50


def test_shaper_params_are_read_only():
    shaper = create_method("ash-b", p=80)
    with pytest.raises(TypeError):
        shaper.params["p"] = 10  # type: ignore[index]
    assert shaper.params == {"p": 80.0} and shaper.describe() == "ash-b p=80 local"


def test_int_and_open_ranges_of_a_declaration():
    m = ParamSpec("M", 100, 1, 10001, "top classes", kind="int", search_grid=(10, 50))
    assert m.validate(50, "gen") == 50 and m.validate(np.int64(7), "gen") == 7
    assert m.validate(20.0, "gen") == 20  # an integral float is an integer
    for bad in (2.5, 0, 10001, "7"):
        with pytest.raises(ParameterError, match=r"gen: M must .*\[1, 10001\) \(an integer\)"):
            m.validate(bad, "gen")
    t = ParamSpec("T", 1.0, 0.0, 1000.0, "temperature", low_open=True)
    assert t.range_text == "(0, 1000)" and t.validate(1e-3, "temp") == 1e-3
    with pytest.raises(ParameterError, match=r"temp: T must be in \(0, 1000\)"):
        t.validate(0.0, "temp")
    with pytest.raises(ValueError, match="kind"):
        ParamSpec("x", 1.0, kind="complex")


def test_spec_validate_params_fills_defaults_and_checks_every_value():
    spec = MethodSpec("two", lambda x, **k: x, "test", params=(
        ParamSpec("a", 1.0, 0.0, 2.0, "a"), ParamSpec("b", 3, 1, 10, "b", kind="int")))
    assert spec.validate_params({}) == {"a": 1.0, "b": 3.0}
    assert spec.validate_params({"b": 9}) == {"a": 1.0, "b": 9.0}
    with pytest.raises(ParameterError, match=r"two: b must be in \[1, 10\)"):
        spec.validate_params({"a": 1.5, "b": 10})
    with pytest.raises(ParameterError, match=r"two: unknown parameter 'c'; its parameters are: a, b"):
        spec.validate_params({"c": 1})


def test_a_method_fitted_on_the_head_needs_it():
    shaper = create_method("dice", p=50)
    with pytest.raises(ParameterError, match=r"dice p=50 is fitted on the linear head too"):
        shaper.fit(ID_FIT)
    with pytest.raises(ParameterError, match=r"id_fit.*\.fit\("):
        shaper.head(*HEAD)
    weight, bias = shaper.fit(ID_FIT, head=HEAD).head(*HEAD)
    assert weight is not HEAD[0] and bias is HEAD[1] and torch.equal(HEAD[0], HEAD[0].clone())
    np.testing.assert_allclose(weight.numpy(), ref.dice_weight(ID_FIT.numpy(), HEAD[0].numpy(), 50),
                               rtol=0, atol=0)
    assert create_method("ash-s").head(*HEAD) == HEAD  # every other method keeps the head
