"""ODIN on the committed demo bundle ``cifar10_resnet20`` (T = 1000, EPS = 0.0014, stored as
the "odin" variant of every split but id_fit): scores equal the independent numpy reference
computed from the stored perturbed features and the head, AUROC equals scikit-learn's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference as ref
from sklearn.metrics import roc_auc_score

from ash_core import Evaluator, Setting, load_bundle

BUNDLE = Path(__file__).resolve().parents[1] / "cached_features" / "cifar10_resnet20"
SMALL_OOD = ["dtd", "noise_gaussian", "noise_uniform"]


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(BUNDLE)


def test_the_demo_bundle_stores_odin_on_every_split_but_id_fit(bundle):
    assert bundle.variant("odin") == {"temperature": 1000.0, "epsilon": 0.0014}
    for s in bundle.splits:
        assert s.variants == ([] if s.role == "id_fit" else ["odin"]), s.name
        if s.variants:
            assert not np.array_equal(np.asarray(s.features),
                                      s.variant_features_tensor("odin").numpy().astype(
                                          s.features.dtype))


def test_odin_on_the_demo_bundle_equals_the_reference(bundle):
    res = Evaluator(bundle, SMALL_OOD).evaluate(Setting("odin"))
    w = bundle.head_weight.numpy().astype(np.float64)
    b = bundle.head_bias.numpy().astype(np.float64)

    def want(name):
        x = bundle.split(name).variant_features_tensor("odin").numpy().astype(np.float64)
        return ref.temperature_msp(x @ w.T + b, 1000.0)

    ind = want(bundle.id_split.name)
    np.testing.assert_allclose(res.id_scores, ind, rtol=1e-6)
    for name in SMALL_OOD:
        ood = want(name)
        np.testing.assert_allclose(res.ood_scores[name], ood, rtol=1e-6)
        y = np.r_[np.ones(len(ind)), np.zeros(len(ood))]
        assert res.ood[name].auroc == pytest.approx(roc_auc_score(y, np.r_[ind, ood]), abs=1e-4)
