"""Exact evaluation of one ``Setting`` (method, parameters, threshold mode, score,
convention) on a bundle: shape the features, run the head, score, measure.

An ``Evaluator`` is a ``FeatureStore`` (``store``: the bundle's features and what follows
from them without a setting) and an OOD selection; ``with_ood`` gives another selection
over the same store, so repeated evaluations only pay for shaping, the head and the
metrics. ``evaluate`` is the one-shot convenience. What an evaluation keeps per split is
its scores and top-1 predictions: a split is shaped, run through the head and scored in
row blocks (``FeatureStore.logit_blocks``), in threads where torch leaves cores idle
(``threads``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ash_core.bundle import Bundle
from ash_core.device import DeviceLike
from ash_core.engine.blocks import score_blocks
from ash_core.engine.fit import feature_scorer, fitted_shaper
from ash_core.engine.result import EvalResult
from ash_core.engine.store import Selection, leaves_logits
from ash_core.engine.threads import map_in_threads
from ash_core.errors import ParameterError
from ash_core.maths.metrics import ood_metrics_many
from ash_core.maths.scores import energy_score, get_score, list_scores, prediction_accuracy
from ash_core.methods import Shaper
from ash_core.setting import Setting

__all__ = ["EvalResult", "Evaluator", "evaluate", "unshaped_score"]

SplitScorer = Callable[[str], tuple[torch.Tensor, np.ndarray]]


def score_function(shaper: Shaper, score: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The score of a setting: a method on logits brings its own (bound to its
    parameters and to the settings of the feature variant it reads), every other method
    uses the named score."""
    scorer = shaper.spec.scorer
    if scorer is None:
        return get_score(score)
    return functools.partial(scorer, **shaper.params, **shaper.variant_settings)


def is_unshaped(shaper: Shaper) -> bool:
    """Whether ``shaper`` leaves features, head and score as they are (``none``): its
    numbers are the unshaped ones, kept per split and score (``FeatureStore.unshaped``)."""
    return leaves_logits(shaper) and shaper.spec.scorer is None and shaper.spec.variant is None


def unshaped_score(score: str) -> str:
    """The score on logits whose unshaped pass serves a setting scored by ``score`` (its
    unshaped ID accuracy, a page's prefetch): ``score`` itself, or energy for a score on
    features."""
    return score if score in list_scores() else "energy"


class Evaluator(Selection):
    """A bundle's feature store and an OOD selection, for fast repeated evaluation.

    ``Evaluator(bundle, ood, device=...)`` makes its own store; ``Evaluator(store, ood)``
    (or ``with_ood``) shares one.
    """

    # ------------------------------------------------------------ the store, for this selection

    def rank_order(self, name: str) -> torch.Tensor | None:
        """The kept per-row unit ranking of a split (``FeatureStore.rank_order``)."""
        return self.store.rank_order(name, self.split_names)

    def base_logits(self, name: str) -> torch.Tensor:
        """Unshaped logits of a split, on the CPU (treat as read-only)."""
        return self.store.base_logits(name, self.split_names)

    def logits(self, x: torch.Tensor,
               head: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The bundle's linear head (or ``head``) on ``x``, on ``x``'s device."""
        return self.store.logits(x, head)

    def shaped_features(self, shaper: Shaper, name: str) -> torch.Tensor:
        """Features of a split shaped by ``shaper``, on the CPU (treat as read-only)."""
        return self.store.shaped_features(shaper, name, self.split_names)

    def shaped_logits(self, shaper: Shaper, name: str) -> torch.Tensor:
        """Logits of a split shaped by ``shaper``, on the CPU (treat as read-only)."""
        return self.store.shaped_logits(shaper, name, self.split_names)

    def unshaped(self, name: str, score: str) -> tuple[torch.Tensor, np.ndarray]:
        """(top-1 predictions, scores) of a split's unshaped logits under ``score``."""
        return self.store.unshaped(name, score, self.split_names)

    # ------------------------------------------------------------------ evaluation

    def shaper(self, setting: Setting) -> Shaper:
        """A validated shaper for ``setting``, fitted on id_fit when the method and its
        threshold mode need it (ParameterError where the store cannot serve it)."""
        setting = setting.validated()
        self.store.check(setting)
        return fitted_shaper(self.store, setting)

    def energies(self, shaper: Shaper, name: str) -> np.ndarray:
        """Energy of a split's logits with ``shaper`` applied, whatever score the method
        brings (the inspector ranks every method's samples by energy)."""
        blocks = self.store.logit_blocks(shaper, name, self.split_names)
        return score_blocks(blocks, energy_score)[1]

    def split_scorer(self, shaper: Shaper, setting: Setting) -> SplitScorer:
        """``split -> (top-1 predictions, scores)`` with the setting applied: a score on
        features (``fit.feature_scorer``) or on logits (in row blocks; the unshaped ones
        kept)."""
        in_use = self.split_names
        scorer = feature_scorer(self.store, shaper, setting, in_use)
        if scorer is not None:
            return scorer
        if is_unshaped(shaper):
            def one(name: str) -> tuple[torch.Tensor, np.ndarray]:
                return self.store.unshaped(name, setting.score, in_use)
        else:
            score_fn = score_function(shaper, setting.score)

            def one(name: str) -> tuple[torch.Tensor, np.ndarray]:
                return score_blocks(self.store.logit_blocks(shaper, name, in_use), score_fn)

        one.splits_in_threads = True  # torch ops only: each split independent, GIL released
        return one

    def map_splits(self, fn: Callable[[str], Any], names: Sequence[str]) -> dict[str, Any]:
        """``{name: fn(name)}``, in threads where torch leaves cores idle
        (``threads.map_in_threads``); ``fn`` must treat splits independently."""
        return map_in_threads(fn, names, self.device)

    def _score_splits(self, scorer: SplitScorer, names: list[str],
                      progress: Callable[[int, int], None] | None = None
                      ) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
        """``scorer`` over the splits: in threads (``map_splits``) for scores on logits (a
        seeded draw per call for ASH-RAND); scores on features keep their own threading
        (faiss, BLAS), one split after the other, each reported to ``progress(done,
        total)`` (the slow path: the first split includes the fit)."""
        if not getattr(scorer, "splits_in_threads", False):
            out = {}
            for i, n in enumerate(names):
                out[n] = scorer(n)
                if progress is not None:
                    progress(i + 1, len(names))
            return out
        return self.map_splits(scorer, names)

    def id_accuracy(self, shaped_predictions: torch.Tensor, score: str = "energy"
                    ) -> dict[str, float | None]:
        """ID top-1 accuracy of the shaped predictions and unshaped (both None when the ID
        split has no labels); ``score``: the setting's, whose unshaped scoring (when it is
        a score on logits) also gives the unshaped predictions."""
        labels = self.bundle.id_split.labels_tensor()
        if labels is None:
            return {"shaped": None, "unshaped": None}
        unshaped = self.store.unshaped_predictions(self.id_name, unshaped_score(score),
                                                   self.split_names)
        return {"shaped": prediction_accuracy(shaped_predictions, labels),
                "unshaped": prediction_accuracy(unshaped, labels)}

    def evaluate(self, setting: Setting,
                 progress: Callable[[int, int], None] | None = None) -> EvalResult:
        """Metrics per OOD set, their average and ID accuracy (shaped and unshaped);
        ``progress(done, total)`` hears of each split scored by a score on features."""
        setting = setting.validated()
        shaper = self.shaper(setting)
        if not self.ood_names:
            raise ParameterError(
                f"bundle {self.bundle.name} has no OOD split selected; select at least one."
            )
        scored = self._score_splits(self.split_scorer(shaper, setting), self.split_names,
                                    progress)
        id_predictions, id_scores = scored[self.id_name]
        ood_scores = {n: scored[n][1] for n in self.ood_names}
        return EvalResult(
            bundle=self.bundle.name,
            setting=setting,
            id_accuracy=self.id_accuracy(id_predictions, setting.score),
            ood=ood_metrics_many(id_scores, ood_scores, setting.convention),
            cutoff=shaper.cutoff,
            id_scores=id_scores,
            ood_scores=ood_scores,
            variant=dict(shaper.variant_settings) or None,
            groups=self.bundle.groups,
        )


def evaluate(bundle: Bundle, setting: Setting, ood: Iterable[str] | None = None, *,
             device: DeviceLike = None) -> EvalResult:
    """One-shot evaluation of a setting on a bundle (see ``Evaluator.evaluate``)."""
    return Evaluator(bundle, ood, device=device).evaluate(setting)
