"""ASH-P/B/S/RAND, ReAct and SCALE pinned against the independent reference (tests/reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ash_core import ash_b, ash_p, ash_rand, ash_s, kept_count, react, scale
from ash_core.errors import FeatureError, ParameterError
from ash_core.maths import shaping
from ash_core.maths.shaping import percentile_of

VARIANTS = {"ash-p": (ash_p, ref.ash_p), "ash-b": (ash_b, ref.ash_b), "ash-s": (ash_s, ref.ash_s)}

# p values including ones where D*p/100 is exactly x.5 for D in {10, 12, 36} (half-to-even),
# plus 0, the paper's 65/90 and values close to 100.
P_VALUES = [0.0, 5.0, 15.0, 25.0, 35.0, 45.0, 50.0, 62.5, 65.0, 75.0, 85.0, 90.0, 95.0, 99.9]


def tied_features(n: int, d: int, seed: int) -> np.ndarray:
    """Values from a small integer set (many ties) with many zeros, plus one all-zero row."""
    rng = np.random.default_rng(seed)
    x = rng.choice([0, 0, 0, 1, 2, 2, 3, 5], size=(n, d)).astype(np.float32)
    x[1] = 0.0
    x[2] = 2.0  # a constant row: every unit ties
    return x


def relu_normals(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.maximum(rng.normal(size=(n, d)), 0).astype(np.float32)


def t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(x, dtype=np.float32))


# --------------------------------------------------------------------------- kept count


@pytest.mark.parametrize(
    ("d", "p", "k"),
    [
        (10, 25, 8),    # round(2.5) = 2 (half to even)
        (10, 35, 6),    # round(3.5) = 4
        (10, 45, 6),    # round(4.5) = 4
        (10, 15, 8),    # round(1.5) = 2
        (2, 25, 2),     # round(0.5) = 0
        (2, 75, 0),     # round(1.5) = 2
        (4, 62.5, 2),   # round(2.5) = 2
        (6, 25, 4),     # round(1.5) = 2
        (10, 0, 10),
        (10, 96, 0),    # round(9.6) = 10: nothing survives
        (2048, 90, 205),
        (512, 65, 179),
        (784, 99.9, 1),
    ],
)
def test_kept_count_rounds_half_to_even(d, p, k):
    assert kept_count(d, p) == k
    assert ref.kept_count(d, p) == k


@pytest.mark.parametrize("p", [25.0, 35.0, 45.0, 15.0])
def test_survivor_count_follows_half_to_even(p):
    x = torch.arange(1, 41, dtype=torch.float32).reshape(4, 10)  # distinct, positive
    out = ash_p(x, p)
    assert (out != 0).sum(dim=1).tolist() == [kept_count(10, p)] * 4


@pytest.mark.parametrize("p", [-1.0, -1e-9, 100.0, 150.0, float("nan"), float("inf"), "abc", None])
@pytest.mark.parametrize("fn", [ash_p, ash_b, ash_s, ash_rand, scale])
def test_bad_p_is_a_parameter_error(fn, p):
    with pytest.raises(ParameterError, match=r"p must be"):
        fn(torch.ones(2, 4), p)


def test_kept_count_rejects_bad_p():
    with pytest.raises(ParameterError, match=r"\[0, 100\)"):
        kept_count(10, 100)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.ones((2, 4), dtype=np.float32), "torch.Tensor"),
        (torch.ones(2, 3, 4), r"\[N, D\] or \[N, C, H, W\]"),
        (torch.ones(5), r"\[N, D\] or \[N, C, H, W\]"),
        (torch.ones(2, 4, dtype=torch.int64), "floating point"),
    ],
)
def test_bad_feature_inputs(x, match):
    for fn in (ash_p, ash_b, ash_s, ash_rand, scale):
        with pytest.raises(FeatureError, match=match):
            fn(x, 50.0)


# --------------------------------------------------------------------------- hand-computed


def test_known_answers():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    torch.testing.assert_close(ash_p(x, 50), torch.tensor([[0.0, 0.0, 3.0, 4.0]]))
    torch.testing.assert_close(ash_b(x, 50), torch.tensor([[0.0, 0.0, 5.0, 5.0]]))
    factor = float(np.exp(10.0 / 7.0))
    torch.testing.assert_close(ash_s(x, 50), torch.tensor([[0.0, 0.0, 3 * factor, 4 * factor]]))
    torch.testing.assert_close(scale(x, 50), x * factor)


def test_ties_break_towards_lower_index():
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 1.0, 3.0, 1.0], [0.0, 2.0, 2.0, 2.0]])
    assert ash_p(x, 50).tolist() == [[1, 1, 0, 0], [3, 0, 3, 0], [0, 2, 2, 0]]
    x5 = torch.tensor([[3.0, 1.0, 3.0, 1.0, 3.0]])
    assert ash_p(x5, 60).tolist() == [[3, 0, 3, 0, 0]]  # k = 5 - 3 = 2: first two 3s
    assert ash_b(x5, 60).tolist() == [[5.5, 0, 5.5, 0, 0]]  # s1 = 11, k = 2


def test_ash_b_fills_k_survivors_even_with_fewer_positive_units():
    x = torch.tensor([[5.0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    out = ash_b(x, 50)  # k = 5; only one unit is positive
    assert out.tolist() == [[1.0] * 5 + [0.0] * 5]


def test_all_zero_rows_and_k_zero_are_zero_rows():
    z = torch.zeros(3, 10)
    for fn in (ash_p, ash_b, ash_s):
        out = fn(z, 65)
        assert torch.equal(out, z)
    x = torch.rand(4, 10) + 0.1
    for fn in (ash_p, ash_b, ash_s, ash_rand):
        out = fn(x, 96)  # k == 0
        assert torch.equal(out, torch.zeros_like(x)), fn.__name__
    # ASH-RAND on an all-zero row still draws its k survivors: the first k units (ties).
    out = ash_rand(z, 65, seed=3)
    k = kept_count(10, 65)
    assert bool((out[:, :k] > 0).all()) and bool((out[:, k:] == 0).all())


def test_ash_s_row_with_zero_pruned_sum_is_zero_not_nan():
    # Negative activations (warned about elsewhere, still computed): survivors 2 and -2
    # sum to s2 = 0. The module docstring defines the shaped row as all zeros.
    x = torch.tensor([[2.0, -2.0, -5.0, -5.0], [0.0, 0.0, 0.0, 0.0]])
    out = ash_s(x, 50)
    assert torch.equal(out, torch.zeros_like(x))
    np.testing.assert_array_equal(out.numpy(), ref.ash_s(x.numpy(), 50))


def test_ash_s_overflow_keeps_pruned_units_zero():
    # One survivor out of 784 ReLU'd normals: exp(s1/s2) overflows fp32. The pruned units
    # must stay exactly 0 (not 0 * inf = NaN); the overflow itself is reported by the metrics.
    x = t(relu_normals(3, 784, 0)) + 0.01
    out = ash_s(x, 99.9)
    mask = ash_p(x, 99.9) != 0
    assert bool((out[~mask] == 0).all())
    assert not bool(torch.isnan(out).any())


# --------------------------------------------------------------------------- vs reference


@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("shape", [(12, 10), (9, 7), (10, 12), (6, 4, 3, 3)])
def test_local_matches_reference_with_ties(variant, p, shape):
    fn, ref_fn = VARIANTS[variant]
    n, d = shape[0], int(np.prod(shape[1:]))
    x = tied_features(n, d, seed=d + int(p * 10)).reshape(shape)
    out = fn(t(x), p)
    assert out.shape == shape and out.dtype == torch.float32
    expected = ref_fn(x, p)
    if variant == "ash-p":  # survivors keep their values: exact
        np.testing.assert_array_equal(out.numpy(), expected)
    else:  # fp32 maths vs the float64 reference
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("p", [10.0, 50.0, 65.0, 85.0, 90.0])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_local_matches_reference_on_relu_normals(variant, p):
    fn, ref_fn = VARIANTS[variant]
    x = relu_normals(16, 64, seed=int(p))
    np.testing.assert_allclose(fn(t(x), p).numpy(), ref_fn(x, p), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("p", [65.0, 90.0])
def test_large_dim_topk_matches_stable_argsort(p):
    # D = 512 is too large for the loop reference; a stable numpy argsort on -x is an
    # independent second implementation of "top-k, ties to the lower index".
    rng = np.random.default_rng(7)
    x = rng.integers(0, 4, size=(20, 512)).astype(np.float32)
    k = ref.kept_count(512, p)
    order = np.argsort(-x, axis=1, kind="stable")[:, :k]
    mask = np.zeros_like(x, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    np.testing.assert_array_equal(ash_p(t(x), p).numpy(), np.where(mask, x, 0))


def test_ash_rand_survivors_and_reproducibility():
    x = tied_features(12, 10, seed=1)
    mask = ref.survivors(x, 65)
    a = ash_rand(t(x), 65, seed=11)
    b = ash_rand(t(x), 65, seed=11)
    c = ash_rand(t(x), 65, seed=12)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    np.testing.assert_array_equal(a.numpy() != 0, mask)
    assert float(a.min()) >= 0 and float(a.max()) < 10
    # the draws: the documented stream of each (seed, split, row); survivors take theirs
    draws = ref.rand_draws(11, "", len(x), x.shape[1])
    np.testing.assert_array_equal(a.numpy(), ref.ash_rand(x, 65, draws=draws))
    named = ash_rand(t(x), 65, seed=11, split="far")
    np.testing.assert_array_equal(named.numpy(),
                                  ref.ash_rand(x, 65, ref.rand_draws(11, "far", len(x), 10)))
    # rows 3.. alone, or any subset by index, draw what they draw in the whole split
    assert torch.equal(ash_rand(t(x[3:]), 65, seed=11, split="far", rows=3), named[3:])
    pick = np.array([7, 2, 9])
    assert torch.equal(ash_rand(t(x[pick]), 65, seed=11, split="far", rows=pick), named[pick])


def test_ash_rand_streams_differ_between_splits_and_rows():
    """A byte copy of a split under another name draws other values, and no two rows of
    one split share their draws (the streams restarted per split gave row i of every split
    the same draws)."""
    x = torch.ones(50, 16)
    a = ash_rand(x, 0.0, seed=0, split="cifar10_test")
    b = ash_rand(x, 0.0, seed=0, split="cifar10_test_copy")
    assert not torch.equal(a, b)
    assert not torch.isclose(a, b).any(dim=1).all()  # not even a shared row
    assert torch.unique(a, dim=0).shape[0] == 50


def test_ash_rand_draws_are_uniform_0_10():
    out = ash_rand(torch.ones(200, 100), 0.0, seed=0)
    assert float(out.min()) >= 0.0 and float(out.max()) < 10.0
    assert abs(float(out.mean()) - 5.0) < 0.1
    assert abs(float(out.var()) - 100.0 / 12.0) < 0.3


@pytest.mark.parametrize("p", [10.0, 50.0, 65.0, 90.0, 99.0])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_global_threshold_matches_reference(variant, p):
    fn, ref_fn = VARIANTS[variant]
    id_fit = tied_features(50, 10, seed=3)
    x = tied_features(15, 10, seed=4)
    thr = percentile_of(t(id_fit), p)
    assert thr == pytest.approx(ref.global_threshold(id_fit, p), rel=1e-6, abs=1e-6)
    expected = ref_fn(x, p, cutoff=thr)
    out = fn(t(x), p, cutoff=thr).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_global_ash_b_uses_each_rows_own_survivor_count():
    x = torch.tensor([[1.0, 5.0, 6.0, 0.0], [7.0, 8.0, 9.0, 1.0], [0.0, 1.0, 2.0, 3.0]])
    out = ash_b(x, 50, cutoff=4.0)
    # row 0: 2 survivors, s1 = 12 -> 6; row 1: 3 survivors, s1 = 25 -> 25/3; row 2: none -> 0
    torch.testing.assert_close(
        out, torch.tensor([[0.0, 6.0, 6.0, 0.0], [25 / 3, 25 / 3, 25 / 3, 0.0], [0.0] * 4])
    )
    assert torch.equal(ash_s(x[2:], 50, cutoff=4.0), torch.zeros(1, 4))
    with pytest.raises(ParameterError, match="finite"):
        ash_p(x, 50, cutoff=float("nan"))


@pytest.mark.parametrize("c", [50.0, 90.0, 99.0])
def test_react_matches_reference(c):
    id_fit = relu_normals(40, 16, seed=1)
    x = relu_normals(10, 16, seed=2)
    clip = percentile_of(t(id_fit), c)
    np.testing.assert_allclose(react(t(x), clip).numpy(), ref.react(x, id_fit, c), rtol=1e-6)
    with pytest.raises(ParameterError, match="finite"):
        react(t(x), float("inf"))


@pytest.mark.parametrize("p", [0.0, 25.0, 35.0, 65.0, 85.0, 96.0])
def test_scale_matches_reference(p):
    x = tied_features(12, 10, seed=9)
    np.testing.assert_allclose(scale(t(x), p).numpy(), ref.scale(x, p), rtol=1e-5, atol=1e-6)


def test_percentile_of_empty_is_a_feature_error():
    with pytest.raises(FeatureError, match="empty"):
        percentile_of(torch.empty(0, 4), 50)


# --------------------------------------------------------------------------- dtypes, shapes


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_low_precision_computes_in_fp32_and_returns_input_dtype(variant, dtype):
    fn, ref_fn = VARIANTS[variant]
    x = t(relu_normals(8, 24, seed=5)).to(dtype)
    out = fn(x, 65)
    assert out.dtype == dtype and out.shape == x.shape
    expected = torch.from_numpy(ref_fn(x.float().numpy(), 65)).float().to(dtype)
    if variant == "ash-p":
        assert torch.equal(out, expected)
    else:  # fp32 maths then one rounding to dtype: at most one ulp apart
        torch.testing.assert_close(out.float(), expected.float(), rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("fn", [ash_p, ash_b, ash_s, ash_rand, scale])
def test_input_never_modified_and_output_is_new(fn):
    for x in (t(tied_features(6, 12, 2)), t(tied_features(6, 12, 2)).reshape(6, 3, 2, 2),
              t(tied_features(6, 12, 2)).to(torch.float16)):
        before = x.clone()
        out = fn(x, 50)
        assert torch.equal(x, before)
        assert out.data_ptr() != x.data_ptr()
        out.fill_(123)
        assert torch.equal(x, before)
    x = t(tied_features(6, 12, 2))
    before = x.clone()
    out = react(x, 1.0)
    out.fill_(7)
    assert torch.equal(x, before)


@pytest.mark.parametrize("fn", [ash_p, ash_b, ash_s, ash_rand, scale])
def test_output_stays_on_the_input_device(fn):
    # the "meta" device checks the device plumbing (masks, draws) without a GPU
    x = torch.empty(3, 2, 2, 2, device="meta")
    out = fn(x, 50)
    assert out.device == x.device and out.shape == x.shape
    assert react(x, 1.0).device == x.device


def test_p_zero_ash_p_is_identity_copy():
    x = t(relu_normals(5, 16, 0))
    out = ash_p(x, 0)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


# --------------------------------------------------------------------------- properties


P_STRATEGY = st.one_of(
    st.sampled_from(P_VALUES),
    st.floats(0.0, 99.99, allow_nan=False, exclude_max=True),
)


@settings(max_examples=40, deadline=None)
@given(
    x=arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 12)),
             elements=st.sampled_from([0.0, 0.0, 0.5, 1.0, 1.0, 2.0, 3.0, 7.0])),
    p=P_STRATEGY,
)
def test_property_local_variants_match_reference(x, p):
    for variant, (fn, ref_fn) in VARIANTS.items():
        out = fn(t(x), p).numpy()
        np.testing.assert_allclose(out, ref_fn(x, p), rtol=1e-5, atol=1e-6, err_msg=variant)
    nonzero_survivors = (ash_p(t(x) + 1.0, p) != 0).sum(dim=1)
    assert nonzero_survivors.tolist() == [ref.kept_count(x.shape[1], p)] * x.shape[0]


@settings(max_examples=30, deadline=None)
@given(
    x=arrays(np.float32, st.tuples(st.integers(1, 5), st.sampled_from([1, 2, 3]),
                                   st.sampled_from([1, 2]), st.sampled_from([2, 3])),
             elements=st.sampled_from([0.0, 1.0, 2.0, 4.0])),
    p=P_STRATEGY,
)
def test_property_4d_equals_flattened_2d(x, p):
    x4 = t(x)
    x2 = x4.reshape(x4.shape[0], -1)
    for fn in (ash_p, ash_b, ash_s, scale):
        assert torch.equal(fn(x4, p).reshape(x2.shape), fn(x2, p))
    assert torch.equal(ash_rand(x4, p, seed=1).reshape(x2.shape), ash_rand(x2, p, seed=1))


@settings(max_examples=30, deadline=None)
@given(x=arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(2, 16)),
                elements=st.floats(0, 10, width=32)),
       p=P_STRATEGY)
def test_property_invariants(x, p):
    xt = t(x)
    s1 = xt.sum(dim=1)
    b = ash_b(xt, p)
    k = ref.kept_count(x.shape[1], p)
    if k > 0:  # ASH-B preserves each row's total activation
        torch.testing.assert_close(b.sum(dim=1), s1, rtol=1e-4, atol=1e-4)
    # ASH-S survivors are exactly ASH-P survivors times one positive factor per row
    pruned = ash_p(xt, p)
    s = ash_s(xt, p)
    assert torch.equal(s == 0, (pruned == 0) | (pruned.sum(dim=1, keepdim=True) == 0))
    assert bool((s >= pruned).all())


@settings(max_examples=30, deadline=None)
@given(
    x=arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 10)),
             elements=st.sampled_from([0.0, 0.0, 1.0, 2.0, 2.0, 3.0])),
    cutoff=st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0]),
)
def test_property_global_variants_match_reference(x, cutoff):
    for variant, (fn, ref_fn) in VARIANTS.items():
        out = fn(t(x), 50.0, cutoff=cutoff).numpy()
        np.testing.assert_allclose(out, ref_fn(x, 50.0, cutoff=cutoff), rtol=1e-6,
                                   atol=1e-6, err_msg=variant)
    survivors = ash_rand(t(x), 50.0, cutoff=cutoff, seed=0).numpy() != 0
    np.testing.assert_array_equal(survivors, x > cutoff)


@pytest.mark.parametrize("d", [7, 64, 513])
def test_selection_mask_equals_the_sorted_order_mask(d):
    # local_mask without an order selects (topk + a running count over ties at the k-th
    # value); with rank_order() it scatters a stable sort: both must keep the same units
    # on rows full of ties, negatives, signed zeros, constant and all-zero rows
    rng = np.random.default_rng(d)
    x = rng.integers(-2, 4, size=(40, d)).astype(np.float32)
    x[0] = 0.0
    x[1] = 3.0
    x[2, : d // 2] = -0.0
    rows = t(x)
    for p in (0.0, 10.0, 33.3, 50.0, 65.0, 90.0, 99.0):
        selected = shaping.local_mask(rows, p)
        by_order = shaping.local_mask(rows, p, order=shaping.rank_order(rows))
        assert torch.equal(selected, by_order), p
        assert selected.sum(dim=1).tolist() == [ref.kept_count(d, p)] * 40


def test_selection_falls_back_to_the_sort_on_non_finite_rows():
    x = t(np.array([[1.0, np.nan, 2.0, 2.0], [np.inf, 0.0, 0.0, 1.0]], dtype=np.float32))
    want = shaping.local_mask(x, 50.0, order=shaping.rank_order(x))
    assert torch.equal(shaping.local_mask(x, 50.0), want)


def test_selection_rows_with_nan_take_the_sort_and_the_others_stay_selected():
    x = t(np.array([[1.0, np.nan, 2.0, 2.0, 0.0, 5.0],
                    [3.0, 1.0, 1.0, 1.0, 0.0, 2.0],
                    [np.nan, np.nan, np.nan, np.nan, np.nan, np.nan]], dtype=np.float32))
    for p in (10.0, 50.0, 80.0):
        want = shaping.local_mask(x, p, order=shaping.rank_order(x))
        assert torch.equal(shaping.local_mask(x, p), want), p
