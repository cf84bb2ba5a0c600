"""How much of a split an exact evaluation holds at once (the dashboard's memory at
ImageNet scale): shaped features and logits in row blocks, unshaped logits cached only while
small, the unshaped scores computed once even when threads ask for them together."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from ash_core import Evaluator, Setting, load_bundle
from ash_core.engine import blocks
from ash_core.engine import store as store_mod
from ash_core.engine import threads as split_threads
from ash_core.engine.memo import Once
from ash_core.engine.store import FeatureStore
from ash_core.maths.scores import energy_score
from ash_core.methods import Shaper

METHODS = [("ash-s", "local"), ("ash-b", "global"), ("ash-rand", "local"), ("react", "local"),
           ("scale", "local"), ("ash-p", "local")]


def reference_energies(ev: Evaluator, method: str, threshold: str, name: str) -> np.ndarray:
    """Energy of the whole split shaped in one call and run through the head in float64."""
    shaper = ev.shaper(Setting(method, {}, threshold))
    shaped = shaper(ev.features(name), split=name).to(torch.float64)
    logits = shaped @ ev.weight.to(torch.float64).T + ev.bias.to(torch.float64)
    return energy_score(logits).numpy()


@pytest.mark.parametrize(("method", "threshold"), METHODS)
def test_splits_are_shaped_in_blocks_with_the_numbers_of_one_whole_call(
        synthetic_bundle, monkeypatch, method, threshold):
    monkeypatch.setattr(blocks, "BLOCK_VALUES", 7 * 32)  # 7 rows of the bundle's 32
    rows_seen = []
    shaper_blocks = Shaper.blocks

    def recording(self, x, rows, order=None, split=""):
        for block in shaper_blocks(self, x, rows, order=order, split=split):
            rows_seen.append(block.shape[0])
            yield block

    monkeypatch.setattr(Shaper, "blocks", recording)
    ev = Evaluator(load_bundle(synthetic_bundle), warn=False)
    result = ev.evaluate(Setting(method, {}, threshold))
    assert rows_seen and max(rows_seen) == 7  # never a whole split (400 / 300 rows)
    assert blocks.block_rows(32) == 7 and blocks.block_rows(10**9) == 1
    for name, got in [(ev.id_name, result.id_scores), *result.ood_scores.items()]:
        want = reference_energies(ev, method, threshold, name)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, err_msg=name)


def test_shaped_logits_of_a_split_are_gathered_from_its_blocks(synthetic_bundle, monkeypatch):
    monkeypatch.setattr(blocks, "BLOCK_VALUES", 7 * 32)  # 7 rows of the bundle's 32
    ev = Evaluator(load_bundle(synthetic_bundle), warn=False)
    shaper = ev.shaper(Setting("ash-rand", {"p": 60.0}))
    got = ev.shaped_logits(shaper, "near")
    want = shaper(ev.features("near"), split="near") @ ev.weight.T + ev.bias
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_unshaped_logits_are_not_kept_past_the_budget(synthetic_bundle, monkeypatch):
    bundle = load_bundle(synthetic_bundle)
    kept = Evaluator(bundle, warn=False)
    expected = {m: kept.evaluate(Setting(m)).to_dict() for m in ("none", "ash-s", "scale")}
    assert kept.store.cached_base_logits()  # small: cached
    monkeypatch.setattr(store_mod, "BASE_LOGITS_CACHE_VALUES", 0)
    ev = Evaluator(bundle, warn=False)
    unshaped_passes = []
    logit_blocks = FeatureStore.logit_blocks

    def counting(self, shaper, name, in_use):
        if shaper.spec.keeps_features:
            unshaped_passes.append(name)
        return logit_blocks(self, shaper, name, in_use)

    monkeypatch.setattr(FeatureStore, "logit_blocks", counting)
    for m in ("none", "ash-s", "scale", "none"):
        assert ev.evaluate(Setting(m)).to_dict() == expected[m], m
    assert not ev.store.cached_base_logits()
    # one unshaped pass per split: the baseline's scores, and the unshaped accuracy from
    # the same pass, are kept (a few bytes per row)
    assert sorted(unshaped_passes) == sorted(ev.split_names)


def test_unshaped_accuracy_reuses_the_scoring_of_the_setting(synthetic_bundle, monkeypatch):
    monkeypatch.setattr(store_mod, "BASE_LOGITS_CACHE_VALUES", 0)
    ev = Evaluator(load_bundle(synthetic_bundle), warn=False)
    ev.evaluate(Setting("none", {}, "local", "msp"))
    monkeypatch.setattr(FeatureStore, "logit_blocks", lambda *a: pytest.fail("a second pass"))
    assert ev.id_accuracy(ev.unshaped(ev.id_name, "msp")[0], "maxlogit")["unshaped"] > 0


def test_once_makes_a_value_once_while_other_threads_wait():
    once, made, started = Once(), [], threading.Event()
    release = threading.Event()

    def make():
        made.append(1)
        started.set()
        release.wait(5)
        return "value"

    results = []
    first = threading.Thread(target=lambda: results.append(once.get("k", make)))
    first.start()
    started.wait(5)
    second = threading.Thread(target=lambda: results.append(once.get("k", make)))
    second.start()
    assert once.get("other", lambda: 2) == 2  # another key does not wait
    release.set()
    first.join(5), second.join(5)
    assert results == ["value", "value"] and made == [1]


def test_once_stores_nothing_when_making_fails():
    once = Once()
    with pytest.raises(ZeroDivisionError):
        once.get("k", lambda: 1 / 0)
    assert "k" not in once and once.get("k", lambda: 3) == 3


def test_split_threads_give_their_freed_memory_back(synthetic_bundle, monkeypatch):
    """glibc keeps what a short-lived thread frees in its arena: 100-300 MB per exact
    evaluation at ImageNet scale unless it is trimmed when the split threads end."""
    import platform

    from ash_core.engine import memory

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert memory.release_free_memory() is True
    calls = []
    monkeypatch.setattr(split_threads, "release_free_memory", lambda: calls.append(1))
    monkeypatch.setattr(split_threads, "split_workers", lambda device: 2)
    Evaluator(load_bundle(synthetic_bundle), warn=False).evaluate(Setting("ash-s"))
    assert calls  # once the split threads are done
    calls.clear()
    monkeypatch.setattr(split_threads, "split_workers", lambda device: 1)
    Evaluator(load_bundle(synthetic_bundle), warn=False).evaluate(Setting("ash-s"))
    assert not calls  # one thread reuses its own arena: nothing to trim
