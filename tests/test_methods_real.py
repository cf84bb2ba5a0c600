"""Every score on features on the committed demo bundles equals its independent reference:
AUROC to 1e-4 and FPR95 to one OOD sample, per OOD set (KNN on the three smallest OOD sets
only, to keep the suite fast; benchmarks/bench_methods.py --check compares all sets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference_features as rf
from sklearn.metrics import roc_auc_score

from ash_core import Evaluator, Setting, load_bundle
from ash_core.features import list_feature_scores

REPO = Path(__file__).resolve().parents[1]
BUNDLES = ["cifar10_resnet20", "cifar10_resnet56"]
SMALL_OOD = ["dtd", "noise_gaussian", "noise_uniform"]


def reference_scores(name: str, b, x: np.ndarray) -> np.ndarray:
    """The reference score at the method's default parameters (dim 0 = D // 2 for D = 64)."""
    fit, labels = b.id_fit.features, b.id_fit.labels
    w, bias = b.head_weight.numpy(), b.head_bias.numpy()
    return {
        "knn": lambda: rf.knn(fit, x, 50),
        "mahalanobis": lambda: rf.mahalanobis(fit, labels, x),
        "rmds": lambda: rf.rmds(fit, labels, x),
        "vim": lambda: rf.vim(fit, w, bias, x, b.dim // 2),
        "residual": lambda: rf.residual(fit, w, bias, x, b.dim // 2),
        "nci": lambda: rf.nci(fit, w, bias, x, 1e-4),
        "fdbd": lambda: rf.fdbd(fit, w, bias, x, True),
    }[name]()


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    return float(roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]))


def fpr95(pos: np.ndarray, neg: np.ndarray) -> float:
    """The share of OOD scores >= the highest threshold that accepts 95% of ID scores."""
    t = np.sort(pos)[::-1][int(np.ceil(0.95 * len(pos))) - 1]
    return float(np.mean(neg >= t))


@pytest.fixture(scope="module", params=BUNDLES)
def evaluator(request, tmp_path_factory):
    """A fresh cache directory, so that the states are fitted by the code under test."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASH_CUBE_CACHE", str(tmp_path_factory.mktemp("fitted")))
        yield Evaluator(load_bundle(REPO / "cached_features" / request.param))


@pytest.mark.parametrize("name", list_feature_scores())
def test_demo_numbers_equal_the_reference(evaluator: Evaluator, name: str):
    b = evaluator.bundle
    ev = evaluator.with_ood(SMALL_OOD if name == "knn" else None)
    result = ev.evaluate(Setting(name))
    splits = [b.id_split, *(b.split(o) for o in ev.ood_names)]
    scores = reference_scores(name, b, np.concatenate([s.features for s in splits]))
    ends = np.cumsum([len(s) for s in splits])[:-1]
    id_ref, *ood_refs = np.split(scores, ends)
    for ood, ood_ref in zip(ev.ood_names, ood_refs, strict=True):
        got = result.ood[ood]
        assert abs(got.auroc - auroc(id_ref, ood_ref)) <= 1e-4, ood
        assert abs(got.fpr95 - fpr95(id_ref, ood_ref)) <= 1.0 / len(ood_ref) + 1e-12, ood
