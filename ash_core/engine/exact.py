"""Evaluate one ``Setting`` (method, parameters, threshold mode, score, convention) on a bundle.

(The module is ``evaluation``, the one-shot function ``evaluate``: the package exports
the function, so a module of the same name would be shadowed by it.)

``Evaluator`` holds a bundle's features as fp32 tensors (loaded once, never
mutated) and the unshaped logits, so repeated evaluations only pay for shaping,
the head and the metrics. ``evaluate`` is the one-shot convenience wrapper.

Memory: a split is shaped, run through the head and scored in row blocks (``blocks``),
so its shaped features and logits are never held whole (at ImageNet shapes, 50,000 rows
x 2048 units x 4 bytes = 410 MB of shaped features, 200 MB of logits), and memory that
the split threads freed goes back to the OS (``split_threads``); what an
evaluation keeps per split is its scores and top-1 predictions. Unshaped logits are cached
only while they are small (``BASE_LOGITS_CACHE_VALUES``); past that, the unshaped scores
and predictions are (``Evaluator.unshaped``), a few bytes per row.

Device (``ash_core.device``): shaping and the head run on ``Evaluator.device``; only
scores come back. The public tensors (``features``, ``weight``/``bias``,
``base_logits``, ``shaped_logits``) are always on the CPU.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ash_core.bundle import Bundle, Split, negative_fraction
from ash_core.device import DeviceLike, resolve_device
from ash_core.engine.blocks import block_rows, gather_rows, head_blocks, row_blocks
from ash_core.engine.fit import feature_scorer
from ash_core.engine.memo import Once
from ash_core.engine.result import EvalResult
from ash_core.engine.threads import map_in_threads
from ash_core.errors import FeatureError, ParameterError
from ash_core.maths.metrics import ood_metrics_many
from ash_core.maths.scores import energy_score, get_score, list_scores, prediction_accuracy
from ash_core.maths.shaping import rank_order
from ash_core.methods import Shaper, create_method, get_method
from ash_core.setting import Setting, as_setting

#: Unshaped logits are cached per split while the splits in use hold at most this many
#: logits in total (128 MB; the demo bundles hold ~1%); an ImageNet-shaped bundle's
#: 85,640 x 1000 would take 343 MB for what is read once per page.
BASE_LOGITS_CACHE_VALUES = 32 * 2**20
#: the setting that shapes nothing (the unshaped logits' scorer)
NO_SHAPING = create_method("none")
#: Rank orders (int16 per unit) are cached per split up to this many units in total.
ORDER_CACHE_UNITS = 64 * 2**20


def _check_features(split: Split, x: torch.Tensor) -> None:
    if x.shape[0] == 0:
        raise FeatureError(
            f"split {split.name!r} has no samples; drop it from the selection or re-extract."
        )
    low, high = torch.aminmax(x)  # two reductions, no [rows, D] mask: NaN propagates
    if not bool(torch.isfinite(low) & torch.isfinite(high)):
        bad = int((~torch.isfinite(x)).sum())
        raise FeatureError(
            f"split {split.name!r} has {bad} NaN/Inf feature values; the extraction is broken "
            "(check the model's numerics, e.g. disable AMP) and re-extract."
        )


def score_function(shaper: Shaper, score: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The score of a setting: a method on logits brings its own (bound to its
    parameters and to the settings of the feature variant it reads), every other method
    uses the named score."""
    scorer = shaper.spec.scorer
    if scorer is None:
        return get_score(score)
    return functools.partial(scorer, **shaper.params, **shaper.variant_settings)


def leaves_logits(shaper: Shaper) -> bool:
    """Whether ``shaper`` changes neither the features nor the head: its logits are the
    unshaped ones (it may still bring its own score, e.g. GEN)."""
    return shaper.spec.identity and shaper.spec.head_fn is None


def is_unshaped(shaper: Shaper) -> bool:
    """Whether ``shaper`` leaves features, head and score as they are (``none``): its
    numbers are the unshaped ones, cached per split and score (``Evaluator.unshaped``)."""
    return leaves_logits(shaper) and shaper.spec.scorer is None and shaper.spec.variant is None


def unshaped_score(score: str) -> str:
    """The score on logits whose unshaped pass serves a setting scored by ``score`` (its
    unshaped ID accuracy, a page's prefetch): ``score`` itself, or energy for a score on
    features."""
    return score if score in list_scores() else "energy"


class Evaluator:
    """Cached fp32 features and unshaped logits of one bundle, for fast repeated evaluation."""

    def __init__(self, bundle: Bundle, ood: Iterable[str] | None = None, warn: bool = True,
                 device: DeviceLike = None):
        self.bundle = bundle
        self.ood_names = [s.name for s in bundle.select_ood(ood)]
        self.device = resolve_device(device)  # None: ASH_DEVICE, else the CPU
        self.weight = bundle.head_weight
        self.bias = bundle.head_bias
        self._features: dict[str, torch.Tensor] = {}
        self._on_device: dict[str, torch.Tensor] = {}  # the CPU tensors themselves on cpu
        self._base_logits: dict[str, torch.Tensor] = {}
        self._orders: dict[str, torch.Tensor] = {}
        self._fitted: dict[tuple, float | None] = {}
        self._states: dict[str, dict] = {}  # fitted states of scores on features
        self._unshaped = Once()  # (split, score) -> (predictions, scores); split -> predictions
        self._warn = warn

    def with_ood(self, ood: Iterable[str] | None) -> Evaluator:
        """An Evaluator of the same bundle for another OOD selection, sharing this one's
        caches (fp32 features, unshaped logits, rank orders, fitted thresholds), which
        depend on the split or the parameters only, never on the selection."""
        ev = Evaluator(self.bundle, ood, warn=self._warn, device=self.device)
        ev.weight, ev.bias = self.weight, self.bias
        ev._features = self._features
        ev._on_device = self._on_device
        ev._base_logits = self._base_logits
        ev._orders = self._orders
        ev._fitted = self._fitted
        ev._states = self._states
        ev._unshaped = self._unshaped
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

    def _device_tensor(self, key: str, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``make()`` on ``self.device``, cached under ``key`` (no copy on the CPU)."""
        if key not in self._on_device:
            self._on_device[key] = make().to(self.device)
        return self._on_device[key]

    def _device_features(self, name: str) -> torch.Tensor:
        return self._device_tensor(f"features/{name}", lambda: self.features(name))

    def _device_head(self, head: tuple[torch.Tensor, torch.Tensor]
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """``head`` on ``self.device`` (the bundle's own head is moved once)."""
        if head[0] is self.weight and head[1] is self.bias:
            return (self._device_tensor("head/weight", lambda: self.weight),
                    self._device_tensor("head/bias", lambda: self.bias))
        return head[0].to(self.device), head[1].to(self.device)

    def logits(self, x: torch.Tensor,
               head: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Apply the bundle's linear head (or ``head``: weight, bias), in row chunks to
        bound memory, on ``x``'s device."""
        weight, bias = (t.to(x.device) for t in head or (self.weight, self.bias))
        return gather_rows(head_blocks(row_blocks(x), weight, bias), x.shape[0],
                           weight.shape[0], x.device)

    def rank_order(self, name: str) -> torch.Tensor | None:
        """The p-independent per-row unit ranking of a split, cached within a memory budget.

        Shaping at a new p then costs a scatter instead of a sort. None when caching it
        would exceed ``ORDER_CACHE_UNITS`` (the shaper then sorts per call).
        """
        if name not in self._orders:
            # all or nothing: when the splits in use do not all fit, caching some of them
            # only adds sorts (a p without a cached order is a selection, ~1/3 of a sort)
            x = self._device_features(name)
            in_use = {self.id_name, *self.ood_names} - {name}
            rows = x.shape[0] + sum(len(self.bundle.split(n)) for n in in_use)
            if rows * math.prod(x.shape[1:]) > ORDER_CACHE_UNITS:
                return None
            # a snapshot: the cache may be shared with other threads (the dashboard), and
            # iterating the live dict while one of them inserts raises RuntimeError
            cached = sum(o.numel() for o in tuple(self._orders.values()))
            if cached + x.numel() > ORDER_CACHE_UNITS:
                return None
            self._orders[name] = rank_order(x)
        return self._orders[name]

    def base_logits(self, name: str) -> torch.Tensor:
        """Unshaped logits of a split, on the CPU (cached; treat as read-only)."""
        return self._device_base_logits(name).cpu()

    def _device_base_logits(self, name: str) -> torch.Tensor:
        """Unshaped logits on ``self.device``: cached while the splits in use hold at most
        ``BASE_LOGITS_CACHE_VALUES`` of them (all or nothing), else computed per call."""
        if name in self._base_logits:
            return self._base_logits[name]
        logits = self.logits(self._device_features(name),
                             self._device_head((self.weight, self.bias)))
        if self._keeps_base_logits(name):
            self._base_logits[name] = logits
        return logits

    def _keeps_base_logits(self, name: str) -> bool:
        """Whether the unshaped logits of the splits in use (and ``name``) fit in
        ``BASE_LOGITS_CACHE_VALUES``."""
        in_use = {self.id_name, *self.ood_names, name}
        rows = sum(len(self.bundle.split(n)) for n in in_use)
        return rows * self.weight.shape[0] <= BASE_LOGITS_CACHE_VALUES

    def unshaped(self, name: str, score: str) -> tuple[torch.Tensor, np.ndarray]:
        """(top-1 predictions, scores) of a split's unshaped logits under the logits score
        ``score``, on the CPU: computed once, in row blocks (each page's baseline and the
        unshaped ID accuracy read them; cheap to keep where the logits are not)."""
        def make() -> tuple[torch.Tensor, np.ndarray]:
            return self.score_blocks(self.logit_blocks(NO_SHAPING, name), get_score(score))

        return self._unshaped.get((name, score), make)

    def unshaped_predictions(self, name: str, score: str = "energy") -> torch.Tensor:
        """Top-1 predictions of a split's unshaped logits (those of any unshaped scoring
        already made, else computed along with ``score``'s scores)."""
        for key in ((name, score), *((name, s) for s in list_scores())):
            if key in self._unshaped:
                return self._unshaped.peek(key)[0]
        return self.unshaped(name, score)[0]

    def shaper(self, method: str | Setting, p: float | None = None, threshold: str = "local",
               seed: int = 0, *, params: Mapping[str, float] | None = None) -> Shaper:
        """A validated shaper, fitted on id_fit when the method/threshold needs it.

        Takes a ``Setting`` or the historical ``(method, p, threshold, seed)``."""
        setting = as_setting(method, p, threshold, seed=seed, params=params)
        shaper = setting.shaper()
        if shaper.needs_fit:
            fit_key = setting.method if shaper.spec.fit == "always" else "global"
            key = (fit_key, tuple(sorted(shaper.params.items())))
            if key not in self._fitted:
                fit_split = self.bundle.id_fit
                if fit_split is None:
                    way_out = ("use threshold='local' or" if shaper.spec.fit == "global"
                               else "choose a method that is not fitted, or")
                    raise ParameterError(
                        f"{shaper.describe()} needs an 'id_fit' split (ID training features) "
                        f"and bundle {self.bundle.name} has none; {way_out} re-extract with "
                        "an id_fit split."
                    )
                shaper.fit(self.features(fit_split.name), head=(self.weight, self.bias))
                self._fitted[key] = (shaper.fitted_threshold, shaper.fitted_state)
            shaper.fitted_threshold, shaper.fitted_state = self._fitted[key]
        if shaper.spec.variant is not None:
            shaper.variant_settings = self._variant_settings(shaper)
        return shaper

    def _variant_settings(self, shaper: Shaper) -> dict[str, Any]:
        """The settings the bundle's variant was extracted with (ParameterError if the
        bundle has no such variant)."""
        settings = self.bundle.variant(shaper.spec.variant)
        if settings is None:
            raise ParameterError(f"{shaper.describe()} is not available on bundle "
                                 f"{self.bundle.name}: {shaper.spec.unavailable(self.bundle)}.")
        return settings

    def variant_features(self, variant: str, name: str, method: str) -> torch.Tensor:
        """fp32 features of ``variant`` of a split (cached; treat as read-only);
        ParameterError naming the split when it lacks the variant ``method`` reads."""
        key = f"variant/{variant}/{name}"
        if key not in self._features:
            split = self.bundle.split(name)
            if variant not in split.variants:
                raise ParameterError(
                    f"method {method!r} reads the {variant!r} feature variant, which split "
                    f"{name!r} of bundle {self.bundle.name} lacks; "
                    f"{get_method(method).variant_hint}.")
            x = split.variant_features_tensor(variant)
            _check_features(split, x)
            self._features[key] = x
        return self._features[key]

    def shaped_features(self, shaper: Shaper, name: str) -> torch.Tensor:
        """Features of a split shaped by ``shaper``, on the CPU (the cached features
        themselves for a method that leaves them unchanged: treat as read-only)."""
        return self._device_shaped_features(shaper, name).cpu()

    def feature_blocks(self, shaper: Shaper, name: str) -> Iterator[torch.Tensor]:
        """A split's features as ``shaper`` shapes them, in blocks of ``block_rows`` rows on
        ``self.device`` (the stored ones, sliced, for a method that shapes nothing)."""
        if shaper.spec.variant is not None or shaper.spec.identity:
            x = self._device_shaped_features(shaper, name)
            yield from row_blocks(x)
            return
        order = self.rank_order(name) if shaper.spec.uses_order(shaper.threshold_mode) else None
        x = self._device_features(name)
        yield from shaper.blocks(x, block_rows(math.prod(x.shape[1:])), order=order)

    def logit_blocks(self, shaper: Shaper, name: str) -> Iterator[torch.Tensor]:
        """A split's logits with ``shaper`` applied, in row blocks on ``self.device`` (the
        cached unshaped logits, whole, for a method that changes neither features nor head)."""
        if leaves_logits(shaper) and (name in self._base_logits
                                      or self._keeps_base_logits(name)):
            yield self._device_base_logits(name)
            return
        weight, bias = self._device_head(shaper.head(self.weight, self.bias))
        yield from head_blocks(self.feature_blocks(shaper, name), weight, bias)

    def energies(self, shaper: Shaper, name: str) -> np.ndarray:
        """Energy of a split's logits with ``shaper`` applied, whatever score the method
        brings (the inspector ranks every method's samples by energy)."""
        return self.score_blocks(self.logit_blocks(shaper, name), energy_score)[1]

    @staticmethod
    def score_blocks(blocks: Iterable[torch.Tensor],
                     score_fn: Callable[[torch.Tensor], torch.Tensor]
                     ) -> tuple[torch.Tensor, np.ndarray]:
        """(top-1 predictions, scores) over logit blocks, on the CPU (scores on logits are
        per row, so block by block they are the same numbers)."""
        preds, scores = [], []
        for logits in blocks:
            preds.append(logits.argmax(dim=1).cpu())
            scores.append(score_fn(logits).cpu().numpy())
        return torch.cat(preds), np.concatenate(scores)

    def _device_shaped_features(self, shaper: Shaper, name: str) -> torch.Tensor:
        variant = shaper.spec.variant
        if variant is not None:  # stored features in place of shaping (ODIN)
            return self._device_tensor(f"variant/{variant}/{name}", lambda: self.variant_features(
                variant, name, shaper.name))
        if shaper.spec.identity:
            return self._device_features(name)
        order = self.rank_order(name) if shaper.spec.uses_order(shaper.threshold_mode) else None
        return shaper(self._device_features(name), order=order)

    def split_scorer(self, shaper: Shaper, setting: Setting
                     ) -> Callable[[str], tuple[torch.Tensor, np.ndarray]]:
        """``split -> (top-1 predictions, scores)`` with the setting applied: a score on
        features (``fitted``) or on logits (in row blocks; the unshaped ones cached)."""
        scorer = feature_scorer(self, shaper, setting)
        if scorer is not None:
            return scorer
        if is_unshaped(shaper):
            def one(name: str) -> tuple[torch.Tensor, np.ndarray]:
                return self.unshaped(name, setting.score)
        else:
            score_fn = score_function(shaper, setting.score)

            def one(name: str) -> tuple[torch.Tensor, np.ndarray]:
                return self.score_blocks(self.logit_blocks(shaper, name), score_fn)

        one.splits_in_threads = True  # torch ops only: each split independent, GIL released
        return one

    def map_splits(self, fn: Callable[[str], Any], names: Sequence[str]) -> dict[str, Any]:
        """``{name: fn(name)}``, in threads where torch leaves cores idle
        (``split_threads.map_in_threads``).

        With one intra-op thread (the dashboard's sessions) a large bundle's first exact
        page would use one core of two; ``fn`` must treat splits independently (torch
        releases the GIL), so threads give the same results."""
        return map_in_threads(fn, names, self.device)

    def _score_splits(self, scorer: Callable[[str], tuple[torch.Tensor, np.ndarray]],
                      names: list[str]) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
        """``scorer`` over the splits: in threads (``map_splits``) for scores on logits (a
        seeded draw per call for ASH-RAND); scores on features keep their own threading
        (faiss, BLAS)."""
        if not getattr(scorer, "splits_in_threads", False):
            return {n: scorer(n) for n in names}
        return self.map_splits(scorer, names)

    def shaped_logits(self, shaper: Shaper, name: str) -> torch.Tensor:
        """Logits of a split shaped by ``shaper``, on the CPU (the cached base logits for a
        method that leaves features unchanged, e.g. ``none``: treat as read-only)."""
        return self._device_shaped_logits(shaper, name).cpu()

    def _device_shaped_logits(self, shaper: Shaper, name: str) -> torch.Tensor:
        if leaves_logits(shaper):
            return self._device_base_logits(name)
        return gather_rows(self.logit_blocks(shaper, name), len(self.bundle.split(name)),
                           self.weight.shape[0], self.device)

    def id_accuracy(self, shaped_predictions: torch.Tensor, score: str = "energy"
                    ) -> dict[str, float | None]:
        """ID top-1 accuracy of the shaped predictions and unshaped (both None when the ID
        split has no labels); ``score``: the setting's, whose unshaped scoring (when it is
        a score on logits) also gives the unshaped predictions."""
        labels = self.bundle.id_split.labels_tensor()
        if labels is None:
            return {"shaped": None, "unshaped": None}
        unshaped = self.unshaped_predictions(self.id_name, unshaped_score(score))
        return {"shaped": prediction_accuracy(shaped_predictions, labels),
                "unshaped": prediction_accuracy(unshaped, labels)}

    def evaluate(
        self,
        method: str | Setting = "ash-s",
        p: float | None = None,
        threshold: str = "local",
        score: str = "energy",
        convention: str = "id",
        seed: int = 0,
        *,
        params: Mapping[str, float] | None = None,
    ) -> EvalResult:
        """Metrics per OOD set, their average and ID accuracy (shaped and unshaped).

        Takes a ``Setting`` or the historical ``(method, p, threshold, score, convention,
        seed)`` argument list (``params=`` for parameters other than ``p``)."""
        setting = as_setting(method, p, threshold, score, convention, seed, params)
        shaper = self.shaper(setting)
        if not self.ood_names:
            raise ParameterError(
                f"bundle {self.bundle.name} has no OOD split selected; select at least one."
            )
        scored = self._score_splits(self.split_scorer(shaper, setting),
                                    [self.id_name, *self.ood_names])
        id_predictions, id_scores = scored[self.id_name]
        ood_scores = {n: scored[n][1] for n in self.ood_names}
        return EvalResult(
            bundle=self.bundle.name,
            method=setting.method,
            p=setting.p,
            threshold=setting.threshold,
            score=setting.score,
            convention=setting.convention,
            id_accuracy=self.id_accuracy(id_predictions, setting.score),
            ood=ood_metrics_many(id_scores, ood_scores, setting.convention),
            fitted_threshold=shaper.fitted_threshold,
            params=dict(setting.params),
            seed=setting.seed,
            id_scores=id_scores,
            ood_scores=ood_scores,
            variant=dict(shaper.variant_settings) or None,
        )


def evaluate(
    bundle: Bundle,
    method: str | Setting = "ash-s",
    p: float | None = None,
    threshold: str = "local",
    score: str = "energy",
    convention: str = "id",
    ood: Iterable[str] | None = None,
    seed: int = 0,
    *,
    params: Mapping[str, float] | None = None,
    device: DeviceLike = None,
) -> EvalResult:
    """One-shot evaluation of a setting on a bundle (see ``Evaluator.evaluate``)."""
    setting = as_setting(method, p, threshold, score, convention, seed, params)
    return Evaluator(bundle, ood, device=device).evaluate(setting)
