"""ash_core.samples: one sample before/after shaping, worst false positives/negatives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ash_core import (
    Evaluator,
    Setting,
    energy_score,
    get_method,
    kept_count,
    list_methods,
    load_bundle,
)
from ash_core.errors import ParameterError
from ash_core.samples import (
    inspect_sample,
    percentile_within,
    shape_sample,
    top_classes,
    worst_samples,
)


@pytest.fixture(scope="module")
def ev(synthetic_bundle):
    return Evaluator(load_bundle(synthetic_bundle), warn=False)


def _inspect(ev, method, p, threshold="local", split="far", i=3):
    shaper = ev.shaper(Setting(method, {} if p is None else {"p": p}, threshold))
    base = ev.evaluate(Setting("none", {}, "local", "energy"))
    shaped = ev.evaluate(Setting(method, {} if p is None else {"p": p}, threshold, "energy"))
    row = ev.features(split)[i : i + 1]
    before = row.clone()
    insp = inspect_sample(row, shaper, ev.weight, ev.bias, ev.bundle.classes,
                          base.id_scores, shaped.id_scores)
    assert torch.equal(row, before), "inspect_sample modified its input"
    return insp, row, shaper


def test_ash_p_local_keeps_exactly_k_top_units(ev):
    insp, row, shaper = _inspect(ev, "ash-p", 75)
    d = row.shape[1]
    k = kept_count(d, 75)
    assert insp.n_kept == k
    assert np.all(np.diff(insp.before) <= 0)  # sorted, largest first
    assert insp.kept[:k].all() and not insp.kept[k:].any()
    np.testing.assert_allclose(insp.after[:k], insp.before[:k])
    assert insp.threshold_value == pytest.approx(insp.before[k - 1])
    assert insp.threshold_kind == "local threshold"
    assert sorted(insp.units.tolist()) == list(range(d))
    np.testing.assert_array_equal(insp.before, np.sort(row[0].numpy())[::-1])


@pytest.mark.parametrize("method", ["ash-s", "dice"])  # dice: the shaped head, not the base
def test_energy_percentile_and_top5_match_the_evaluator(ev, method):
    insp, row, shaper = _inspect(ev, method, 80, split="id_test", i=5)
    base = ev.evaluate(Setting("none", {}, "local", "energy"))
    shaped = ev.evaluate(Setting(method, {"p": 80}, "local", "energy"))
    assert insp.energy_before == pytest.approx(float(base.id_scores[5]), rel=1e-5)
    assert insp.energy_after == pytest.approx(float(shaped.id_scores[5]), rel=1e-5)
    # each energy is placed within the ID energies of its own setting (ties count half)
    for got, e, ids in ((insp.percentile_before, insp.energy_before, base.id_scores),
                        (insp.percentile_after, insp.energy_after, shaped.id_scores)):
        expected = 100 * ((ids < e).mean() + 0.5 * (ids == e).mean())
        assert got == pytest.approx(expected)
    assert insp.percentile_before != pytest.approx(insp.percentile_after)  # tells them apart
    assert len(insp.top_before) == 5
    probs = insp.top_after["probability"].to_numpy()
    assert np.all(np.diff(probs) <= 0) and probs.sum() <= 1 + 1e-6
    assert insp.predicted_after == insp.top_after["class"].iloc[0]
    e = float(energy_score(ev.logits(shaper(row), shaper.head(ev.weight, ev.bias)))[0])
    assert insp.energy_after == pytest.approx(e, rel=1e-6)


@pytest.mark.parametrize("method", list_methods())
@pytest.mark.parametrize("split", ["id_test", "far"])
def test_shape_sample_is_the_row_of_the_shaped_split(ev, method, split):
    # regression: the inspector shaped ASH-RAND rows alone, i.e. with row 0's draws, so
    # its activations and energy differed from the evaluation's for every index > 0
    shaper = ev.shaper(Setting(method))
    feats = ev.features(split)
    whole = shaper(feats, split=split)  # the whole split, as the evaluation shapes it
    for i in (0, 1, 7, feats.shape[0] - 1):
        torch.testing.assert_close(shape_sample(shaper, feats, i, split), whole[i : i + 1],
                                   rtol=0, atol=0)
    with pytest.raises(ParameterError, match="out of range"):
        shape_sample(shaper, feats, feats.shape[0], split)


def test_ash_rand_inspection_matches_the_evaluation(ev):
    shaper = ev.shaper(Setting("ash-rand", {"p": 70}))
    base = ev.evaluate(Setting("none", {}, "local", "energy"))
    shaped = ev.evaluate(Setting("ash-rand", {"p": 70}, "local", "energy"))
    feats = ev.features("id_test")
    for i in (3, 11):
        insp = inspect_sample(feats[i : i + 1], shaper, ev.weight, ev.bias, ev.bundle.classes,
                              base.id_scores, shaped.id_scores,
                              shaped=shape_sample(shaper, feats, i, "id_test"))
        assert insp.energy_after == pytest.approx(float(shaped.id_scores[i]), rel=1e-6)
        alone = inspect_sample(feats[i : i + 1], shaper, ev.weight, ev.bias, ev.bundle.classes,
                               base.id_scores, shaped.id_scores)
        assert alone.energy_after != pytest.approx(insp.energy_after, rel=1e-6)


@pytest.mark.parametrize("method", list_methods())
def test_every_method_can_be_inspected(ev, method):
    spec = get_method(method)
    insp, row, _ = _inspect(ev, method, 70 if spec.has_p else None)
    assert insp.before.shape == insp.after.shape == (row.shape[1],)
    assert insp.kept.dtype == bool
    if spec.keeps_features:  # none and the scores on logits leave the features alone
        assert insp.threshold_value is None
        np.testing.assert_allclose(insp.after, insp.before)


def test_global_threshold_is_the_fitted_value(ev):
    insp, _, shaper = _inspect(ev, "ash-p", 60, "global")
    assert insp.threshold_value == pytest.approx(shaper.cutoff)
    assert insp.threshold_kind == "global threshold"
    assert np.all(insp.before[insp.kept] > shaper.cutoff)
    react, _, rs = _inspect(ev, "react", 90)
    assert react.threshold_kind == "clip" and react.after.max() <= rs.cutoff + 1e-6


def test_worst_samples_lists(ev):
    r = ev.evaluate(Setting("ash-s", {"p": 80}))
    fp = worst_samples(r.id_scores, r.ood_scores, "id_test", "fp", 7)
    assert len(fp) == 7 and set(fp["set"]) <= {"far", "near"}
    assert np.all(np.diff(fp["score"]) <= 0)
    best = max(float(s.max()) for s in r.ood_scores.values())
    assert fp["score"].iloc[0] == pytest.approx(best)
    fn = worst_samples(r.id_scores, r.ood_scores, "id_test", "fn", 5)
    assert (fn["set"] == "id_test").all() and np.all(np.diff(fn["score"]) >= 0)
    assert fn["score"].iloc[0] == pytest.approx(float(r.id_scores.min()))
    assert fn["id_percentile"].iloc[0] < 1
    with pytest.raises(ParameterError):
        worst_samples(r.id_scores, r.ood_scores, "id_test", "xx")


def test_helpers_validate():
    assert percentile_within(2.0, np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(37.5)
    with pytest.raises(ParameterError):
        percentile_within(1.0, np.array([]))
    t = top_classes(torch.tensor([0.0, 5.0, 1.0]), ["a", "b", "c"], k=5)
    assert list(t["class"]) == ["b", "c", "a"]
    with pytest.raises(ParameterError):
        top_classes(torch.zeros(2, 3), ["a", "b", "c"])


def reference_worst(id_scores, ood_scores, id_name, kind, n):
    """Written from worst_samples' docstring with plain Python: (set, index, score, pct)."""
    if kind == "fp":  # most ID-like OOD samples: highest scores, first come first
        pool = [(name, i, float(v)) for name, s in ood_scores.items() for i, v in enumerate(s)]
        chosen = sorted(pool, key=lambda t: -t[2])[:n]  # sorted() is stable
    else:  # most OOD-like ID samples: lowest scores
        pool = [(id_name, i, float(v)) for i, v in enumerate(id_scores)]
        chosen = sorted(pool, key=lambda t: t[2])[:n]
    ids = [float(v) for v in id_scores]

    def pct(v):
        below = sum(1 for u in ids if u < v)
        equal = sum(1 for u in ids if u == v)
        return 100.0 * (below + 0.5 * equal) / len(ids)

    return [(name, i, v, pct(v)) for name, i, v in chosen]


@pytest.mark.parametrize("kind", ["fp", "fn"])
def test_worst_samples_match_an_independent_reference(ev, kind):
    r = ev.evaluate(Setting("ash-s", {"p": 80}, "local", "energy"))
    table = worst_samples(r.id_scores, r.ood_scores, "id_test", kind, 7)
    want = reference_worst(r.id_scores, r.ood_scores, "id_test", kind, 7)
    got = list(table[["set", "index", "score", "id_percentile"]].itertuples(index=False))
    assert [(s, int(i), v) for s, i, v, _ in got] == [(s, i, v) for s, i, v, _ in want]
    np.testing.assert_allclose([g[3] for g in got], [w[3] for w in want], rtol=0, atol=1e-12)
    empty = worst_samples(np.array([]), {}, "id_test", "fn", 3)
    assert empty.empty and list(empty.columns) == ["set", "index", "score", "id_percentile"]


def test_worst_samples_with_ties_take_the_first_and_count_ties_half():
    ids = np.array([1.0, 2.0, 2.0, 3.0])
    ood = {"a": np.array([2.0, 5.0]), "b": np.array([5.0, 0.0])}
    fp = worst_samples(ids, ood, "id", "fp", 3)
    assert list(zip(fp["set"], fp["index"], fp["score"], fp["id_percentile"], strict=True)) \
        == [("a", 1, 5.0, 100.0), ("b", 0, 5.0, 100.0), ("a", 0, 2.0, 50.0)]
    assert reference_worst(ids, ood, "id", "fp", 3) == [
        ("a", 1, 5.0, 100.0), ("b", 0, 5.0, 100.0), ("a", 0, 2.0, 50.0)]
    fn = worst_samples(ids, ood, "id", "fn", 2)
    assert list(fn["index"]) == [0, 1] and list(fn["id_percentile"]) == [12.5, 50.0]


def test_kept_is_k_survivors_by_rank_including_zero_ones(ev):
    # regression: "kept" counted the non-zero survivors (59 of 256) while the caption said
    # k = 90; under a local threshold the k top-ranked units survive, zeros among them
    from ash_core.samples import kept_units
    shaper = ev.shaper(Setting("ash-p", {"p": 10.0}))
    row = ev.features("far")[3].numpy().astype(np.float64)
    before = np.sort(row)[::-1]
    before[-5:] = 0.0  # zeros at the bottom ranks
    mask, rule = kept_units(shaper, before)
    k = kept_count(before.size, 10.0)
    assert mask.sum() == k and mask[:k].all() and f"k = {k} of D = {before.size}" in rule
    react = ev.shaper(Setting("react", {"p": 90.0}))
    mask, rule = kept_units(react, before)
    assert mask.all() and "clipped" in rule  # ReAct prunes nothing
    glob = ev.shaper(Setting("ash-p", {"p": 60.0}, "global"))
    mask, rule = kept_units(glob, before)
    assert (mask == (before > glob.cutoff)).all() and "global cutoff" in rule
    assert kept_units(ev.shaper(Setting("none")), before)[0].all()


def test_sample_score_is_the_settings_own_score(ev):
    from ash_core.samples import sample_score
    knn = ev.evaluate(Setting("knn").validated())
    base = ev.evaluate(Setting("none"))
    got = sample_score(base, knn, ev.bundle.id_split.name, "far", 4)
    assert got.name == "knn" and got.after == pytest.approx(float(knn.ood_scores["far"][4]))
    assert got.before == pytest.approx(float(base.ood_scores["far"][4]))
    assert got.percentile_after == pytest.approx(percentile_within(got.after, knn.id_scores))
    idn = ev.bundle.id_split.name
    assert sample_score(knn, knn, idn, idn, 1).after == pytest.approx(float(knn.id_scores[1]))


def test_wordnet_ids_read_as_their_first_synonym(tmp_path):
    from ash_core.bundle.classnames import readable_classes
    data = tmp_path / "data"
    (data / "tin" / "val" / "images").mkdir(parents=True)
    (data / "tin" / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\n"
                                            "n01629819\tEuropean fire salamander\n")
    names, used = readable_classes(["n01443537", "n01629819", "n09999999"], data,
                                   ["tin/val/images"])
    assert names == ["goldfish", "European fire salamander", "n09999999"]
    assert used == str(data / "tin" / "words.txt")
    assert readable_classes(["cat", "dog"], data, ["tin/val/images"]) == (["cat", "dog"], None)
    assert readable_classes(["n01443537"], None, ["tin"]) == (["n01443537"], None)
    # never above the data root
    assert readable_classes(["n01443537"], data / "tin" / "val", ["images"])[1] is None
