"""Evaluate one (method, p, threshold, score) setting on a bundle.

``Evaluator`` holds a bundle's features as fp32 tensors (loaded once, never
mutated) and the unshaped logits, so repeated evaluations only pay for shaping,
the head and the metrics. ``evaluate`` is the one-shot convenience wrapper.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .bundle import Bundle, Split, negative_fraction
from .errors import FeatureError, ParameterError
from .metrics import OODMetrics, average_metrics, check_convention, ood_metrics_many
from .registry import Shaper, create_method
from .scores import accuracy, get_score
from .shaping import rank_order

CHUNK_ROWS = 16384
#: Rank orders (int16 per unit) are cached per split up to this many units in total.
ORDER_CACHE_UNITS = 64 * 2**20


@dataclass
class EvalResult:
    """What ``ash-explore evaluate`` reports; ``to_dict`` is its JSON form."""

    bundle: str
    method: str
    p: float | None
    threshold: str
    score: str
    convention: str
    id_accuracy: dict[str, float | None]
    ood: dict[str, OODMetrics]
    fitted_threshold: float | None = None
    id_scores: np.ndarray | None = field(default=None, repr=False)
    ood_scores: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    engine: str = "exact"  # how the numbers were computed: "exact" (Evaluator) or "cube"

    @property
    def average(self) -> dict[str, float]:
        return average_metrics(self.ood)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``ash-explore evaluate --format json`` (fractions)."""
        return {
            "bundle": self.bundle,
            "method": self.method,
            "p": self.p,
            "threshold": self.threshold,
            "score": self.score,
            "fpr_convention": self.convention,
            "fitted_threshold": self.fitted_threshold,
            "id_accuracy": dict(self.id_accuracy),
            "ood": {name: m.as_dict() for name, m in self.ood.items()},
            "average": self.average,
        }


def _check_features(split: Split, x: torch.Tensor) -> None:
    if x.shape[0] == 0:
        raise FeatureError(
            f"split {split.name!r} has no samples; drop it from the selection or re-extract."
        )
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise FeatureError(
            f"split {split.name!r} has {bad} NaN/Inf feature values; the extraction is broken "
            "(check the model's numerics, e.g. disable AMP) and re-extract."
        )


class Evaluator:
    """Cached fp32 features and unshaped logits of one bundle, for fast repeated evaluation."""

    def __init__(self, bundle: Bundle, ood: Iterable[str] | None = None, warn: bool = True):
        self.bundle = bundle
        self.ood_names = [s.name for s in bundle.select_ood(ood)]
        self.weight = bundle.head_weight
        self.bias = bundle.head_bias
        self._features: dict[str, torch.Tensor] = {}
        self._base_logits: dict[str, torch.Tensor] = {}
        self._orders: dict[str, torch.Tensor] = {}
        self._fitted: dict[tuple[str, float | None], float | None] = {}
        self._warn = warn

    def with_ood(self, ood: Iterable[str] | None) -> Evaluator:
        """An Evaluator of the same bundle for another OOD selection, sharing this one's
        caches (fp32 features, unshaped logits, rank orders, fitted thresholds), which
        depend on the split or the parameters only, never on the selection."""
        ev = Evaluator(self.bundle, ood, warn=self._warn)
        ev.weight, ev.bias = self.weight, self.bias
        ev._features = self._features
        ev._base_logits = self._base_logits
        ev._orders = self._orders
        ev._fitted = self._fitted
        return ev

    @property
    def id_name(self) -> str:
        return self.bundle.id_split.name

    @property
    def split_names(self) -> list[str]:
        return [self.id_name, *self.ood_names]

    def features(self, name: str) -> torch.Tensor:
        """fp32 features of a split (cached; treat as read-only)."""
        if name not in self._features:
            split = self.bundle.split(name)
            x = split.features_tensor()
            _check_features(split, x)
            frac = negative_fraction(x.numpy()) if self._warn else 0.0
            if frac > 0:
                warnings.warn(
                    f"split {name!r}: {frac:.1%} of activations are negative; ASH assumes "
                    "post-ReLU features (computed anyway).",
                    stacklevel=3,
                )
            self._features[name] = x
        return self._features[name]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the bundle's linear head, in row chunks to bound memory."""
        outs = [
            torch.addmm(self.bias, x[i : i + CHUNK_ROWS], self.weight.T)
            for i in range(0, x.shape[0], CHUNK_ROWS)
        ]
        return torch.cat(outs) if outs else torch.empty(0, self.weight.shape[0])

    def rank_order(self, name: str) -> torch.Tensor | None:
        """The p-independent per-row unit ranking of a split, cached within a memory budget.

        Shaping at a new p then costs a scatter instead of a sort. None when caching it
        would exceed ``ORDER_CACHE_UNITS`` (the shaper then sorts per call).
        """
        if name not in self._orders:
            x = self.features(name)
            # a snapshot: the cache may be shared with other threads (the dashboard), and
            # iterating the live dict while one of them inserts raises RuntimeError
            cached = sum(o.numel() for o in tuple(self._orders.values()))
            if cached + x.numel() > ORDER_CACHE_UNITS:
                return None
            self._orders[name] = rank_order(x)
        return self._orders[name]

    def base_logits(self, name: str) -> torch.Tensor:
        """Unshaped logits of a split (cached; treat as read-only)."""
        if name not in self._base_logits:
            self._base_logits[name] = self.logits(self.features(name))
        return self._base_logits[name]

    def shaper(self, method: str, p: float | None = None, threshold: str = "local",
               seed: int = 0) -> Shaper:
        """A validated shaper, fitted on id_fit when the method/threshold needs it."""
        shaper = create_method(method, p=p, threshold=threshold, seed=seed)
        if shaper.needs_fit:
            key = (method if shaper.spec.fit == "always" else "global", shaper.p)
            if key not in self._fitted:
                fit_split = self.bundle.id_fit
                if fit_split is None:
                    raise ParameterError(
                        f"{shaper.describe()} needs an 'id_fit' split (ID training features) "
                        f"and bundle {self.bundle.name} has none; use threshold='local' or "
                        "re-extract with an id_fit split."
                    )
                self._fitted[key] = shaper.fit(self.features(fit_split.name)).fitted_threshold
            shaper.fitted_threshold = self._fitted[key]
        return shaper

    def shaped_logits(self, shaper: Shaper, name: str) -> torch.Tensor:
        """Logits of a split shaped by ``shaper`` (the cached base logits for ``none``:
        treat as read-only)."""
        if shaper.name == "none":
            return self.base_logits(name)
        order = self.rank_order(name) if shaper.spec.uses_order(shaper.threshold_mode) else None
        return self.logits(shaper(self.features(name), order=order))

    def id_accuracy(self, shaped_id_logits: torch.Tensor) -> dict[str, float | None]:
        """ID top-1 accuracy shaped and unshaped (both None when the ID split has no labels)."""
        labels = self.bundle.id_split.labels_tensor()
        if labels is None:
            return {"shaped": None, "unshaped": None}
        return {
            "shaped": accuracy(shaped_id_logits, labels),
            "unshaped": accuracy(self.base_logits(self.id_name), labels),
        }

    def evaluate(
        self,
        method: str = "ash-s",
        p: float | None = None,
        threshold: str = "local",
        score: str = "energy",
        convention: str = "id",
        seed: int = 0,
    ) -> EvalResult:
        """Metrics per OOD set, their average and ID accuracy (shaped and unshaped)."""
        check_convention(convention)
        score_fn = get_score(score)
        shaper = self.shaper(method, p, threshold, seed)
        if not self.ood_names:
            raise ParameterError(
                f"bundle {self.bundle.name} has no OOD split selected; select at least one."
            )
        id_logits = self.shaped_logits(shaper, self.id_name)
        id_scores = score_fn(id_logits).numpy()
        ood_scores = {n: score_fn(self.shaped_logits(shaper, n)).numpy() for n in self.ood_names}
        metrics = ood_metrics_many(id_scores, ood_scores, convention)
        return EvalResult(
            bundle=self.bundle.name,
            method=shaper.name,
            p=shaper.p,
            threshold=shaper.threshold_mode,
            score=score,
            convention=convention,
            id_accuracy=self.id_accuracy(id_logits),
            ood=metrics,
            fitted_threshold=shaper.fitted_threshold,
            id_scores=id_scores,
            ood_scores=ood_scores,
        )


def evaluate(
    bundle: Bundle,
    method: str = "ash-s",
    p: float | None = None,
    threshold: str = "local",
    score: str = "energy",
    convention: str = "id",
    ood: Iterable[str] | None = None,
    seed: int = 0,
) -> EvalResult:
    """One-shot evaluation of a setting on a bundle (see ``Evaluator.evaluate``)."""
    return Evaluator(bundle, ood).evaluate(method, p, threshold, score, convention, seed)
