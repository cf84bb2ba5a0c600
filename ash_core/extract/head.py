"""The classifier head stored in a bundle: the model's own final Linear, or one fitted on the
id_fit features (for backbones without a usable classifier)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ash_core.errors import ExtractError
from ash_core.extract.hook import FeatureHook


@dataclass
class Head:
    """weight [C, D], bias [C], class names and provenance (``classifier`` in the manifest)."""

    weight: np.ndarray
    bias: np.ndarray
    classes: list[str]
    info: dict[str, Any]


NO_HEAD = ("layer {name!r} does not feed a Linear head, so there is no head to save; capture "
           "the input of the final Linear (default) or pass --fit-head.")


def model_head(hook: FeatureHook, class_names: Sequence[str] | None, dim: int) -> Head:
    """The hooked model's Linear head; ``class_names`` are used when they fit its outputs."""
    head = hook.head
    if head is None:
        raise ExtractError(NO_HEAD.format(name=hook.name))
    weight = head.weight.detach().float().cpu().numpy()
    bias = (head.bias.detach().float().cpu().numpy() if head.bias is not None
            else np.zeros(weight.shape[0], np.float32))
    if weight.shape[1] != dim:
        raise ExtractError(f"features are {dim}-d but the head {hook.name!r} expects "
                           f"{weight.shape[1]} inputs; choose the layer that feeds it or pass "
                           "--fit-head.")
    classes = list(class_names or [])
    if len(classes) != weight.shape[0]:
        classes = [f"class{i}" for i in range(weight.shape[0])]
    return Head(weight, bias, classes, {"source": "model", "module": hook.name})


def fitted_head(features: np.ndarray, labels: np.ndarray | None,
                class_names: Sequence[str] | None, split: str) -> Head:
    """A logistic-regression head fitted on ``features`` of the id_fit split ``split``."""
    if labels is None:
        raise ExtractError(f"--fit-head: split {split!r} has no labels; use a labelled folder "
                           "(class subfolders) or array set.")
    n_cls = int(labels.max()) + 1
    t0 = time.perf_counter()
    weight, bias, train_acc = fit_linear_head(features, labels, n_cls)
    info = {"source": "fitted",
            "method": "multinomial logistic regression (sklearn lbfgs, C=1, raw features)",
            "fit_split": split, "train_accuracy": round(train_acc, 5),
            "fit_seconds": round(time.perf_counter() - t0, 2)}
    classes = list(class_names or [f"class{i}" for i in range(n_cls)])
    return Head(weight, bias, classes, info)


def fit_linear_head(features: np.ndarray, labels: np.ndarray, num_classes: int,
                    c: float = 1.0, max_iter: int = 500) -> tuple[np.ndarray, np.ndarray, float]:
    """Multinomial logistic regression on raw (non-standardised) features, so the head
    applies directly to the features, as ASH needs. Returns weight [C, D], bias [C] and the
    training accuracy. Deterministic (lbfgs)."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(features, dtype=np.float64)
    clf = LogisticRegression(C=c, max_iter=max_iter, tol=1e-4)
    clf.fit(x, labels)
    if list(clf.classes_) != list(range(num_classes)):
        raise ExtractError(f"id_fit labels cover classes {list(clf.classes_)}; expected all of "
                           f"0..{num_classes - 1}.")
    acc = float((clf.predict(x) == labels).mean())
    weight, bias = clf.coef_, clf.intercept_
    if num_classes == 2:  # sklearn keeps one row for binary problems; softmax-equivalent split
        weight = np.concatenate([-weight / 2, weight / 2])
        bias = np.concatenate([-bias / 2, bias / 2])
    return weight.astype(np.float32), bias.astype(np.float32), acc


def head_accuracy(weight: np.ndarray, bias: np.ndarray, feats: np.ndarray,
                  labels: np.ndarray) -> float:
    logits = np.asarray(feats, dtype=np.float32) @ weight.T + bias
    return float((logits.argmax(1) == labels).mean())
