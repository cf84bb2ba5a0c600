"""Evaluate / Evaluator against a manual computation with the reference."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
import torch
from conftest import make_synthetic_bundle

from ash_core import (
    METRIC_NAMES,
    EvalResult,
    Evaluator,
    Setting,
    SplitData,
    evaluate,
    load_bundle,
    ood_metrics,
    write_bundle,
)
from ash_core.errors import BundleError, FeatureError, ParameterError


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory):
    path = make_synthetic_bundle(tmp_path_factory.mktemp("ev") / "small", n_id=120, n_ood=80,
                                 dim=16, classes=4, seed=5)
    return load_bundle(path)


def manual(bundle, method, p, threshold="local", score="energy", convention="id"):
    """The reference pipeline (numpy loops, float64 head) on the bundle's raw arrays."""
    fit = np.asarray(bundle.id_fit.features) if bundle.id_fit else None
    return ref.evaluate(
        np.asarray(bundle.id_split.features),
        {s.name: np.asarray(s.features) for s in bundle.ood_splits},
        bundle.head_weight.numpy(), bundle.head_bias.numpy(), method, p, threshold, fit, score,
        convention, bundle.id_split.labels,
    )


def head_of(path) -> tuple[np.ndarray, np.ndarray]:
    b = load_bundle(path)
    return b.head_weight.numpy(), b.head_bias.numpy()


def assert_close_to_manual(r: EvalResult, expected, n_min: int):
    np.testing.assert_allclose(r.id_scores, expected["id_scores"], rtol=1e-4, atol=1e-4)
    assert r.id_accuracy["shaped"] == pytest.approx(expected["acc"], abs=1.5 / n_min)
    for name, metrics in expected["ood"].items():
        for k in METRIC_NAMES:
            # float32 vs float64 rounding may swap two near-equal scores: one sample at most
            assert r.ood[name][k] == pytest.approx(metrics[k], abs=1.5 / n_min), (name, k)


@pytest.mark.parametrize(
    ("method", "p", "threshold"),
    [
        ("none", None, "local"),
        ("ash-p", 65.0, "local"),
        ("ash-b", 65.0, "local"),
        ("ash-s", 90.0, "local"),
        ("ash-s", 62.5, "local"),
        ("ash-p", 60.0, "global"),
        ("ash-b", 70.0, "global"),
        ("ash-s", 80.0, "global"),
        ("react", 90.0, "local"),
        ("scale", 85.0, "local"),
    ],
)
@pytest.mark.parametrize(("score", "convention"), [("energy", "id"), ("msp", "ood")])
def test_evaluate_equals_manual_reference_computation(small_bundle, method, p, threshold,
                                                      score, convention):
    r = evaluate(small_bundle, Setting(method, {} if p is None else {"p": p}, threshold, score,
                                        convention))
    assert (r.method, r.p, r.threshold_mode, r.score, r.convention) == (method, p, threshold, score,
                                                                  convention)
    assert all(m.convention == convention for m in r.ood.values())
    assert_close_to_manual(r, manual(small_bundle, method, p, threshold, score, convention), 80)


def test_maxlogit_matches_manual(small_bundle):
    r = evaluate(small_bundle, Setting("ash-b", {"p": 75}, "local", "maxlogit"))
    assert_close_to_manual(r, manual(small_bundle, "ash-b", 75, score="maxlogit"), 80)


def test_none_equals_raw_energy_metrics(synthetic_bundle):
    b = load_bundle(synthetic_bundle)
    r = evaluate(b, Setting("none"))
    w, bias = b.head_weight, b.head_bias
    id_scores = torch.logsumexp(b.id_split.features_tensor() @ w.T + bias, dim=1).numpy()
    np.testing.assert_allclose(r.id_scores, id_scores, rtol=1e-5)
    for s in b.ood_splits:
        raw = torch.logsumexp(s.features_tensor() @ w.T + bias, dim=1).numpy()
        expected = ood_metrics(id_scores, raw)
        for k in METRIC_NAMES:
            assert r.ood[s.name][k] == pytest.approx(expected[k], abs=1 / 300)
    assert r.id_accuracy["shaped"] == r.id_accuracy["unshaped"]
    assert r.p is None and r.cutoff is None


def test_p_zero_ash_p_equals_unshaped_exactly(synthetic_bundle):
    ev = Evaluator(load_bundle(synthetic_bundle))
    none, p0 = ev.evaluate(Setting("none")), ev.evaluate(Setting("ash-p", {"p": 0}))
    assert p0.id_accuracy["shaped"] == p0.id_accuracy["unshaped"] == none.id_accuracy["shaped"]
    np.testing.assert_array_equal(p0.id_scores, none.id_scores)
    for name in none.ood:
        assert p0.ood[name] == none.ood[name]


def test_id_accuracy_shaped_and_unshaped(synthetic_bundle):
    b = load_bundle(synthetic_bundle)
    labels = b.id_split.labels
    logits = b.id_split.features_tensor() @ b.head_weight.T + b.head_bias
    unshaped = float((logits.argmax(1).numpy() == labels).mean())
    assert unshaped == pytest.approx(0.9, abs=0.1)  # the fixture mislabels 10%
    r = evaluate(b, Setting("ash-b", {"p": 95}))
    assert r.id_accuracy["unshaped"] == pytest.approx(unshaped, abs=1e-12)
    shaped = torch.from_numpy(ref.ash_b(np.asarray(b.id_split.features), 95)).float()
    expected = float(((shaped @ b.head_weight.T + b.head_bias).argmax(1).numpy() == labels).mean())
    assert r.id_accuracy["shaped"] == pytest.approx(expected, abs=1.5 / 400)
    assert r.id_accuracy["shaped"] != r.id_accuracy["unshaped"]  # heavy pruning costs accuracy


def test_global_mode_fits_on_id_fit(synthetic_bundle, tmp_path):
    b = load_bundle(synthetic_bundle)
    r = evaluate(b, Setting("ash-s", {"p": 70}, "global"))
    assert r.cutoff == pytest.approx(
        np.percentile(np.asarray(b.id_fit.features, np.float64), 70), rel=1e-5)
    assert r.cutoff == pytest.approx(ref.global_threshold(b.id_fit.features, 70),
                                               rel=1e-5)
    # a different id_fit split changes the threshold and the result
    shifted = [
        SplitData(s.name, s.role, np.asarray(s.features) * (3.0 if s.role == "id_fit" else 1.0),
                  s.labels)
        for s in b.splits
    ]
    other = load_bundle(write_bundle(tmp_path / "o", b.head_weight, b.head_bias, b.classes,
                                     shifted))
    r2 = evaluate(other, Setting("ash-s", {"p": 70}, "global"))
    assert r2.cutoff == pytest.approx(3 * r.cutoff, rel=1e-5)
    assert r2.ood["far"].auroc != r.ood["far"].auroc
    # local mode ignores id_fit entirely
    assert evaluate(other, Setting("ash-s", {"p": 70})).ood["far"] == evaluate(b, Setting("ash-s", {"p": 70})).ood["far"]


def test_react_clip_is_fitted_on_id_fit(synthetic_bundle):
    b = load_bundle(synthetic_bundle)
    r = evaluate(b, Setting("react"))
    assert r.p == 90.0
    assert r.cutoff == pytest.approx(ref.global_threshold(b.id_fit.features, 90),
                                               rel=1e-5)


@pytest.mark.parametrize(("method", "threshold", "advice"), [
    ("ash-p", "global", "use threshold='local' or re-extract"),
    ("react", "local", "choose a method that is not fitted, or re-extract"),
    ("dice", "local", "choose a method that is not fitted, or re-extract"),
])
def test_missing_id_fit_is_a_clear_error(tmp_path, method, threshold, advice):
    rng = np.random.default_rng(0)
    feats = np.maximum(rng.normal(size=(30, 6)), 0).astype(np.float32)
    path = write_bundle(tmp_path / "nofit", rng.normal(size=(3, 6)), np.zeros(3), "abc",
                        [SplitData("id", "id", feats, rng.integers(0, 3, 30)),
                         SplitData("ood", "ood", feats * 2)])
    with pytest.raises(ParameterError, match=r"needs an 'id_fit' split.*has none") as err:
        evaluate(load_bundle(path), Setting(method, {}, threshold))
    assert advice in str(err.value)
    # local thresholds need no id_fit: the numbers are the reference pipeline's
    got = evaluate(load_bundle(path), Setting("ash-p", {}, "local"))
    want = ref.evaluate(feats, {"ood": feats * 2}, *head_of(path), "ash-p", 65.0)
    assert got.ood["ood"].auroc == pytest.approx(want["ood"]["ood"]["auroc"], abs=1e-9)


def test_bad_settings_are_parameter_errors(synthetic_bundle):
    b = load_bundle(synthetic_bundle)
    with pytest.raises(ParameterError, match=r"ash-s: p must be in \[0, 100\)"):
        evaluate(b, Setting("ash-s", {"p": 100}))
    with pytest.raises(ParameterError, match="p must be"):
        evaluate(b, Setting("ash-s", {"p": -5}))
    with pytest.raises(ParameterError, match="unknown method 'ash-z'"):
        evaluate(b, Setting("ash-z"))
    with pytest.raises(ParameterError, match="unknown score 'odin'"):
        evaluate(b, Setting("ash-s", {}, "local", "odin"))
    with pytest.raises(ParameterError, match="unknown FPR convention"):
        evaluate(b, Setting("ash-s", {}, "local", "energy", "both"))
    with pytest.raises(ParameterError, match="supports threshold mode"):
        evaluate(b, Setting("scale", {}, "global"))
    with pytest.raises(BundleError, match="unknown OOD split"):
        evaluate(b, Setting("ash-s"), ood=["far", "mars"])
    with pytest.raises(ParameterError, match="no OOD split selected"):
        evaluate(b, Setting("ash-s"), ood=[])


def test_ood_selection_and_average(synthetic_bundle):
    b = load_bundle(synthetic_bundle)
    full = evaluate(b, Setting("ash-s", {"p": 90}))
    near = evaluate(b, Setting("ash-s", {"p": 90}), ood=["near"])
    assert list(full.ood) == ["far", "near"] and list(near.ood) == ["near"]
    assert near.ood["near"] == full.ood["near"]
    assert list(evaluate(b, Setting("ash-s", {"p": 90}), ood="near").ood) == ["near"]  # a name, not letters
    for k in METRIC_NAMES:
        assert full.average[k] == pytest.approx((full.ood["far"][k] + full.ood["near"][k]) / 2)
    # far OOD is easier than near OOD in the fixture
    assert full.ood["far"].auroc > full.ood["near"].auroc > 0.5


def test_to_dict_structure(synthetic_bundle):
    d = evaluate(load_bundle(synthetic_bundle), Setting("ash-b", {"p": 80}, "local", "energy", "ood")).to_dict()
    for key in ("method", "p", "threshold", "score", "id_accuracy", "ood", "average"):
        assert key in d
    assert (d["method"], d["p"], d["threshold"], d["score"]) == ("ash-b", 80.0, "local", "energy")
    assert d["fpr_convention"] == "ood"
    assert set(d["id_accuracy"]) == {"shaped", "unshaped"}
    assert set(d["ood"]) == {"far", "near"}
    for m in [*d["ood"].values(), d["average"]]:
        assert set(m) == set(METRIC_NAMES) and all(0 <= v <= 1 for v in m.values())


def test_ash_rand_is_seeded_through_evaluate(synthetic_bundle):
    ev = Evaluator(load_bundle(synthetic_bundle))
    a, b, c = ev.evaluate(Setting("ash-rand", {"p": 65}, "local", "energy", "id", 1)), ev.evaluate(Setting("ash-rand", {"p": 65}, "local", "energy", "id", 1)), \
        ev.evaluate(Setting("ash-rand", {"p": 65}, "local", "energy", "id", 2))
    np.testing.assert_array_equal(a.id_scores, b.id_scores)
    assert not np.array_equal(a.id_scores, c.id_scores)


def test_repeated_evaluation_is_identical_and_never_mutates(synthetic_bundle):
    b = load_bundle(synthetic_bundle)
    before = np.array(b.id_split.features)
    ev = Evaluator(b)
    cached = ev.features("id_test").clone()
    first = ev.evaluate(Setting("ash-s", {"p": 90}))
    ev.evaluate(Setting("react"))
    ev.evaluate(Setting("ash-b", {"p": 50}, "global"))
    again = ev.evaluate(Setting("ash-s", {"p": 90}))
    assert first.ood == again.ood
    assert torch.equal(ev.features("id_test"), cached)
    np.testing.assert_array_equal(np.asarray(b.id_split.features), before)


def test_fp16_bundle_gives_nearly_the_same_metrics(synthetic_bundle, tmp_path):
    b = load_bundle(synthetic_bundle)
    splits = [SplitData(s.name, s.role, np.asarray(s.features), s.labels) for s in b.splits]
    half = load_bundle(write_bundle(tmp_path / "h", b.head_weight, b.head_bias, b.classes,
                                    splits, feature_dtype="float16"))
    r32, r16 = evaluate(b, Setting("ash-s", {"p": 90})), evaluate(half, Setting("ash-s", {"p": 90}))
    for name in r32.ood:
        assert r16.ood[name].auroc == pytest.approx(r32.ood[name].auroc, abs=0.01)


def test_id_split_without_labels_is_refused_not_scored_without_accuracy(tmp_path):
    # ID accuracy (shaped and unshaped) is a pinned output: an unlabelled ID split used to be
    # scored with id_accuracy None; it is now refused when written (and when loaded).
    rng = np.random.default_rng(0)
    feats = np.maximum(rng.normal(size=(30, 6)), 0).astype(np.float32)
    with pytest.raises(BundleError, match="labels"):
        write_bundle(tmp_path / "nolabels", rng.normal(size=(3, 6)), np.zeros(3), "abc",
                     [SplitData("id", "id", feats), SplitData("ood", "ood", feats + 1)])
    assert not (tmp_path / "nolabels").exists()


def test_ash_s_overflow_is_reported_clearly(tmp_path):
    # One survivor out of 1024 units: exp(s1/s2) overflows float32.
    rng = np.random.default_rng(0)
    feats = (np.maximum(rng.normal(size=(20, 1024)), 0) + 0.01).astype(np.float32)
    path = write_bundle(tmp_path / "wide", rng.normal(size=(3, 1024)), np.zeros(3), "abc",
                        [SplitData("id", "id", feats, np.zeros(20, np.int64)),
                         SplitData("ood", "ood", feats * 2)])
    with pytest.raises(FeatureError, match=r"NaN/Inf.*lower p"):
        evaluate(load_bundle(path), Setting("ash-s", {"p": 99.9}))


def test_cached_rank_orders_give_the_uncached_numbers(synthetic_bundle, monkeypatch):
    """The Evaluator's p-independent sort cache is an optimisation only."""
    from ash_core import Evaluator, load_bundle
    from ash_core.engine import store as store_mod

    bundle = load_bundle(synthetic_bundle)
    cached = Evaluator(bundle)
    results = {(m, p): cached.evaluate(Setting(m, {"p": p})).to_dict()
               for m in ("ash-p", "ash-b", "ash-s", "ash-rand", "scale") for p in (10, 65, 95)}
    assert cached.store.cached_orders()  # the cache was used
    monkeypatch.setattr(store_mod, "ORDER_CACHE_UNITS", 0)
    uncached = Evaluator(bundle)
    for (m, p), want in results.items():
        assert uncached.evaluate(Setting(m, {"p": p})).to_dict() == want
    assert not uncached.store.cached_orders()


def test_rank_orders_are_cached_for_all_splits_in_use_or_none(synthetic_bundle, monkeypatch):
    """A budget that one split fits but not all of them caches none (a p without a
    cached order is a selection, cheaper than sorting the splits that would fit)."""
    from ash_core import Evaluator, load_bundle
    from ash_core.engine import store as store_mod

    bundle = load_bundle(synthetic_bundle)
    ev = Evaluator(bundle)
    units = {n: ev.features(n).numel() for n in (ev.id_name, *ev.ood_names)}
    monkeypatch.setattr(store_mod, "ORDER_CACHE_UNITS", sum(units.values()) - 1)
    assert max(units.values()) <= store_mod.ORDER_CACHE_UNITS
    ev.evaluate(Setting("ash-s", {"p": 65}))
    assert not ev.store.cached_orders()
    monkeypatch.setattr(store_mod, "ORDER_CACHE_UNITS", sum(units.values()))
    ev.evaluate(Setting("ash-s", {"p": 65}))
    assert set(ev.store.cached_orders()) == set(units)


def test_with_ood_shares_the_caches_and_gives_the_same_numbers(synthetic_bundle):
    from ash_core import Evaluator, load_bundle

    bundle = load_bundle(synthetic_bundle)
    base = Evaluator(bundle, warn=False)
    full = base.evaluate(Setting("ash-s", {"p": 80}, "global")).to_dict()
    far = base.with_ood(["far"])
    assert far.ood_names == ["far"] and base.ood_names == ["far", "near"]
    assert far.store is base.store
    assert far.features("id_test") is base.features("id_test")  # not copied again
    got = far.evaluate(Setting("ash-s", {"p": 80}, "global")).to_dict()
    assert got["ood"]["far"] == full["ood"]["far"] and list(got["ood"]) == ["far"]
    assert got["fitted_threshold"] == full["fitted_threshold"]
    far.rank_order("near")  # computed once, seen by every selection
    assert "near" in base.store.cached_orders()


def test_rank_order_budget_survives_a_concurrent_insert(synthetic_bundle):
    """Regression: the budget check iterated the live (shared) order cache, so another
    dashboard session inserting meanwhile raised 'dictionary changed size'."""
    from ash_core import Evaluator, load_bundle

    ev = Evaluator(load_bundle(synthetic_bundle), warn=False)

    class Racing:  # an order whose numel() lets "another thread" insert into the cache
        def numel(self) -> int:
            ev.store._orders.setdefault("late", torch.zeros((1, 1), dtype=torch.int16))
            return 1

    ev.store._orders["early"] = Racing()
    assert ev.rank_order("far") is not None


@pytest.mark.parametrize("p", [50.0, 90.0])
def test_dice_evaluates_like_the_reference(small_bundle, p):
    """DICE: energy of the features through the head sparsified on id_fit (reference loops)."""
    b = small_bundle
    masked = ref.dice_weight(np.asarray(b.id_fit.features), b.head_weight.numpy(), p)
    assert (masked == 0).mean() == pytest.approx(p / 100, abs=0.02)
    bias = b.head_bias.numpy().astype(np.float64)

    def scores(split):
        return ref.energy(np.asarray(split.features, dtype=np.float64) @ masked.T + bias)

    r = evaluate(b, Setting("dice", {"p": p}))
    id_scores = scores(b.id_split)
    np.testing.assert_allclose(r.id_scores, id_scores, rtol=1e-4, atol=1e-4)
    for s in b.ood_splits:
        want = ref.ood_metrics(id_scores, scores(s))
        for k in METRIC_NAMES:
            assert r.ood[s.name][k] == pytest.approx(want[k], abs=1.5 / len(id_scores)), k
    logits = np.asarray(b.id_split.features, dtype=np.float64) @ masked.T + bias
    acc = float(np.mean(logits.argmax(1) == b.id_split.labels))
    assert r.id_accuracy["shaped"] == pytest.approx(acc, abs=1.5 / len(id_scores))


def test_splits_scored_in_threads_give_the_sequential_numbers(synthetic_bundle, monkeypatch):
    """With one torch thread on a multi-core CPU (the dashboard) the splits are scored in
    threads; every number, ASH-RAND's draws included, must equal the sequential ones."""
    import threading

    from ash_core import Evaluator, load_bundle
    from ash_core.engine import threads as split_threads
    from ash_core.engine.store import FeatureStore

    bundle = load_bundle(synthetic_bundle)
    methods = ("ash-p", "ash-b", "ash-s", "ash-rand", "react", "scale", "none")
    monkeypatch.setattr(split_threads, "split_workers", lambda device: 1)
    sequential = {m: Evaluator(bundle).evaluate(Setting(m)).to_dict() for m in methods}
    threads = set()
    shaped = FeatureStore.feature_blocks

    def recording(self, shaper, name, in_use):
        threads.add(threading.current_thread().name)
        return shaped(self, shaper, name, in_use)

    monkeypatch.setattr(FeatureStore, "feature_blocks", recording)
    monkeypatch.setattr(split_threads, "split_workers", lambda device: 3)
    for m in methods:
        assert Evaluator(bundle).evaluate(Setting(m)).to_dict() == sequential[m], m
    assert any(t.startswith("ash-split") for t in threads)
