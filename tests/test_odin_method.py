"""The ``odin`` method: temperature-scaled MSP of the logits of the bundle's stored
"odin" variant (ODIN's perturbed-input features), against the independent numpy
reference (tests/reference.py), with T read from the bundle; clear errors where the
variant is missing, and the dashboard's offer says why."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref

from ash_core import Setting, SplitData, evaluate, get_method, load_bundle, write_bundle
from ash_core.errors import ParameterError

C, D = 4, 6


def _bundle(path, temperature=1000.0, odin_on=("id", "ood_a", "ood_b"), seed=0):
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(C, D)).astype(np.float32)
    weight[1] = weight[0]                                    # two identical head rows: ties
    bias = np.zeros(C, np.float32)
    feats = {n: np.maximum(rng.normal(0.5, 1, size=(30, D)), 0).astype(np.float32)
             for n in ("id", "fit", "ood_a", "ood_b")}
    feats["id"][3] = feats["id"][4]                          # duplicate rows
    feats["ood_a"][0] = 0.0                                  # an all-zero row: uniform softmax
    pert = {n: (x + rng.normal(0, 0.1, size=x.shape)).clip(0).astype(np.float32)
            for n, x in feats.items()}
    pert["ood_b"][5] = feats["ood_b"][5]                     # a row the perturbation left alone
    roles = {"id": "id", "fit": "id_fit", "ood_a": "ood", "ood_b": "ood"}
    splits = [SplitData(n, roles[n], feats[n], rng.integers(0, C, 30) if n in ("id", "fit")
                        else None, variants={"odin": pert[n]} if n in odin_on else {})
              for n in feats]
    b = write_bundle(path, weight, bias, list("abcd"), splits, {"model": {"name": "t"}},
                     variants={"odin": {"temperature": temperature, "epsilon": 0.0014}})
    return load_bundle(b), weight, bias, pert, splits[0].labels


@pytest.mark.parametrize("temperature", [1.0, 1000.0])
def test_odin_matches_the_numpy_reference(tmp_path, temperature):
    b, w, bias, pert, labels = _bundle(tmp_path / "b", temperature)
    res = evaluate(b, Setting("odin"))
    logits = {n: x.astype(np.float64) @ w.T.astype(np.float64) for n, x in pert.items()}
    want_id = ref.temperature_msp(logits["id"], temperature)
    np.testing.assert_allclose(res.id_scores, want_id, rtol=1e-6, atol=1e-12)
    for name in ("ood_a", "ood_b"):
        want = ref.temperature_msp(logits[name], temperature)
        np.testing.assert_allclose(res.ood_scores[name], want, rtol=1e-6, atol=1e-12)
        assert res.ood[name].auroc == pytest.approx(ref.auroc(want_id, want), abs=1e-6)
    shaped_acc = float(np.mean(np.argmax(logits["id"], 1) == labels))
    assert res.id_accuracy["shaped"] == pytest.approx(shaped_acc)  # of the perturbed inputs
    assert res.score == "odin" and res.params == {}
    assert res.to_dict()["variant"] == {"temperature": temperature, "epsilon": 0.0014}


def test_odin_reads_the_temperature_from_the_bundle(tmp_path):
    low = evaluate(_bundle(tmp_path / "a", 1.0)[0], Setting("odin")).id_scores
    high = evaluate(_bundle(tmp_path / "b", 1000.0)[0], Setting("odin")).id_scores
    assert high.max() < 0.3 < low.max()          # T = 1000 flattens the softmax (C = 4)


def test_odin_without_the_variant_says_how_to_extract_it(tmp_path):
    b = _bundle(tmp_path / "b", odin_on=())[0]
    with pytest.raises(ParameterError, match=r"odin.*--odin T,EPS"):
        evaluate(b, Setting("odin"))
    assert "--odin T,EPS" in get_method("odin").unavailable(b)
    from bundle_helpers import write_small

    plain = load_bundle(write_small(tmp_path / "plain"))   # declares no variant at all
    assert get_method("odin").unavailable(plain).startswith(
        "needs the 'odin' feature variant, which this bundle lacks; extract it with")


def test_odin_on_a_split_without_the_variant_names_it(tmp_path):
    b = _bundle(tmp_path / "b", odin_on=("id", "ood_a"))[0]
    assert "ood_b" in get_method("odin").unavailable(b)
    assert evaluate(b, Setting("odin"), ood=["ood_a"]).ood["ood_a"].auroc >= 0  # the rest works
    with pytest.raises(ParameterError, match="split 'ood_b'.*lacks.*--odin"):
        evaluate(b, Setting("odin"))


def test_odin_is_refused_at_an_inner_layer():
    from ash_core.layers.replay import LayerStore

    store = LayerStore.__new__(LayerStore)  # no maps needed to refuse
    store.layer = "layer3"
    with pytest.raises(ParameterError, match="penultimate"):
        store.check(Setting("odin").validated())


def test_dashboard_offers_odin_only_with_the_variant(tmp_path):
    from dashboard import offer

    with_odin = _bundle(tmp_path / "b")[0]
    assert "odin" in offer.methods_for(with_odin)
    assert offer.missing_caption(with_odin) == ""
    plain = _bundle(tmp_path / "c", odin_on=())[0]
    assert "odin" not in offer.methods_for(plain)
    assert "odin" in offer.missing_caption(plain) and "--odin" in offer.missing_caption(plain)
