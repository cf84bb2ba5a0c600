"""``FeatureStore``: one bundle's features and what follows from them without a setting.

A store holds a bundle's fp32 features (loaded once, never mutated), their copies on
``FeatureStore.device``, the per-row rank orders, the unshaped logits while they are small,
the unshaped predictions and scores, and the stored feature variants (ODIN's). Every
``Evaluator`` of the bundle, whatever its OOD selection, reads one store: what it keeps
depends on a split (or on the parameters of a fit, ``once``), never on a selection.

Memory: a split is shaped, run through the head and scored in row blocks (``blocks``), so
its shaped features and logits are never held whole (at ImageNet shapes, 50,000 rows x
2048 units x 4 bytes = 410 MB of shaped features, 200 MB of logits). Rank orders and
unshaped logits are kept only while the splits in use fit a budget (all or nothing): the
caller names those splits (``in_use``, its selection's), since a store is shared by
selections of different sizes. Past the budget, the unshaped scores and predictions are
kept (``unshaped``), a few bytes per row.

Device (``ash_core.device``): shaping and the head run on ``device``; the public tensors
(``features``, ``weight``/``bias``, ``base_logits``, ``shaped_logits``) are on the CPU.

Threads: the dashboard's sessions share a store. Values are computed before they are
stored, so a reader sees a whole value or none; two threads may compute one value twice
(the same numbers), except for the unshaped scores and ``once`` values, made once per key
while other askers wait (``memo.Once``).

``Selection`` is a store with the OOD splits scored against its ID split: what the score
cube reads, and what an ``Evaluator`` evaluates.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from ash_core.bundle import Bundle, Split, negative_fraction
from ash_core.device import DeviceLike, resolve_device
from ash_core.engine.blocks import block_rows, gather_rows, head_blocks, row_blocks, score_blocks
from ash_core.engine.memo import Once, Recent
from ash_core.errors import FeatureError, ParameterError
from ash_core.maths.scores import get_score, list_scores
from ash_core.maths.shaping import rank_order
from ash_core.methods import Shaper, create_method, get_method
from ash_core.setting import Setting

#: Unshaped logits are kept per split while the splits in use hold at most this many
#: logits in total (128 MB; the demo bundles hold ~1%); an ImageNet-shaped bundle's
#: 85,640 x 1000 would take 343 MB for what is read once per page.
BASE_LOGITS_CACHE_VALUES = 32 * 2**20
#: Rank orders (int16 per unit) are kept per split up to this many units in total.
ORDER_CACHE_UNITS = 64 * 2**20
#: the shaper that shapes nothing (the unshaped logits' scorer)
#: per-split tables of scores on features kept (KNN's: 8 MB per 10,000 rows at k <= 200,
#: 40 MB up to 1000; ViM's: 8 (D - 1) bytes a row): three settings of a bundle of eight
#: splits, and at most ``TABLES_MAX_BYTES`` of them in total
TABLES_KEPT = 24
TABLES_MAX_BYTES = 1024 * 2**20
NO_SHAPING = create_method("none")

Head = tuple[torch.Tensor, torch.Tensor]


def check_features(split: Split, x: torch.Tensor) -> None:
    """FeatureError for a split without rows or with NaN/Inf features."""
    if x.shape[0] == 0:
        if split.role == "id_fit":
            raise FeatureError(
                f"split {split.name!r} (role id_fit) has no samples, and this setting fits "
                "on id_fit; re-extract with ID training data, or choose a setting that fits "
                "nothing (local thresholds, no score on features).")
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


def table_nbytes(value: Any) -> int:
    """The bytes of the arrays in a score's table (a tensor, an array or a tuple)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, tuple):
        return sum(table_nbytes(v) for v in value)
    return 0


def leaves_logits(shaper: Shaper) -> bool:
    """Whether ``shaper`` changes neither the features nor the head: its logits are the
    unshaped ones (it may still bring its own score, e.g. GEN)."""
    return shaper.spec.keeps_features and shaper.spec.head_fn is None


class FeatureStore:
    """A bundle's features, their rank orders and unshaped logits, for many evaluations."""

    def __init__(self, bundle: Bundle, device: DeviceLike = None, warn: bool = True):
        self.bundle = bundle
        self.device = resolve_device(device)  # None: ASH_DEVICE, else the CPU
        self.warn = warn
        self.weight = bundle.head_weight
        self.bias = bundle.head_bias
        self._features: dict[str, torch.Tensor] = {}
        self._on_device: dict[str, torch.Tensor] = {}  # the CPU tensors themselves on cpu
        self._base_logits: dict[str, torch.Tensor] = {}
        self._orders: dict[str, torch.Tensor] = {}
        self._unshaped = Once()  # (split, score) -> (predictions, scores)
        self._derived = Once()  # ``once``: fitted cutoffs and states
        # ``table``: a score's per-split tables
        self._tables = Recent(TABLES_KEPT, TABLES_MAX_BYTES, table_nbytes)

    @property
    def id_name(self) -> str:
        return self.bundle.id_split.name

    # ------------------------------------------------------------------ what is kept

    def once(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()``, made once per ``key`` for every selection of this store (a fit on
        id_fit, keyed by what it depends on); threads asking together wait for one."""
        return self._derived.get(key, make)

    def table(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()`` once per ``key`` while among the ``TABLES_KEPT`` most recently used
        (a score's per-split table: ``features.ScoreTable``)."""
        return self._tables.get(key, make)

    def cached_orders(self) -> list[str]:
        """The splits whose rank orders are kept."""
        return list(self._orders)

    def cached_base_logits(self) -> list[str]:
        """The splits whose unshaped logits are kept."""
        return list(self._base_logits)

    # ------------------------------------------------------------------ features

    def features(self, name: str) -> torch.Tensor:
        """fp32 features of a split (kept; treat as read-only)."""
        if name not in self._features:
            split = self.bundle.split(name)
            x = split.features_tensor()
            check_features(split, x)
            frac = negative_fraction(x.numpy()) if self.warn else 0.0
            if frac > 0:
                warnings.warn(
                    f"split {name!r}: {frac:.1%} of activations are negative; ASH assumes "
                    "post-ReLU features (computed anyway).",
                    stacklevel=3,
                )
            self._features[name] = x
        return self._features[name]

    def variant_features(self, variant: str, name: str, method: str) -> torch.Tensor:
        """fp32 features of ``variant`` of a split (kept; treat as read-only);
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
            check_features(split, x)
            self._features[key] = x
        return self._features[key]

    def _on(self, key: str, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``make()`` on ``self.device``, kept under ``key`` (no copy on the CPU)."""
        if key not in self._on_device:
            self._on_device[key] = make().to(self.device)
        return self._on_device[key]

    def device_features(self, name: str) -> torch.Tensor:
        """``features(name)`` on ``self.device`` (kept)."""
        return self._on(f"features/{name}", lambda: self.features(name))

    def device_head(self, head: Head) -> Head:
        """``head`` on ``self.device`` (the bundle's own head is moved once)."""
        if head[0] is self.weight and head[1] is self.bias:
            return (self._on("head/weight", lambda: self.weight),
                    self._on("head/bias", lambda: self.bias))
        return head[0].to(self.device), head[1].to(self.device)

    def logits(self, x: torch.Tensor, head: Head | None = None) -> torch.Tensor:
        """Apply the bundle's linear head (or ``head``: weight, bias), in row chunks to
        bound memory, on ``x``'s device."""
        weight, bias = (t.to(x.device) for t in head or (self.weight, self.bias))
        return gather_rows(head_blocks(row_blocks(x), weight, bias), x.shape[0],
                           weight.shape[0], x.device)

    def rank_order(self, name: str, in_use: Collection[str]) -> torch.Tensor | None:
        """The p-independent per-row unit ranking of a split, kept within a memory budget.

        Shaping at a new p then costs a scatter instead of a sort. None when keeping it
        would exceed ``ORDER_CACHE_UNITS`` with the other splits ``in_use`` (the shaper
        then sorts per call).
        """
        if name not in self._orders:
            # all or nothing: when the splits in use do not all fit, keeping some of them
            # only adds sorts (a p without a kept order is a selection, ~1/3 of a sort)
            x = self.device_features(name)
            rows = x.shape[0] + sum(len(self.bundle.split(n)) for n in set(in_use) - {name})
            if rows * math.prod(x.shape[1:]) > ORDER_CACHE_UNITS:
                return None
            # a snapshot: another thread may insert while this one counts, and iterating
            # the live dict then raises RuntimeError
            kept = sum(o.numel() for o in tuple(self._orders.values()))
            if kept + x.numel() > ORDER_CACHE_UNITS:
                return None
            self._orders[name] = rank_order(x)
        return self._orders[name]

    # ------------------------------------------------------------------ unshaped logits

    def keeps_base_logits(self, name: str, in_use: Collection[str]) -> bool:
        """Whether the unshaped logits of ``name`` are kept: they are, or those of the
        splits ``in_use`` and ``name`` fit in ``BASE_LOGITS_CACHE_VALUES``."""
        if name in self._base_logits:
            return True
        rows = sum(len(self.bundle.split(n)) for n in {*in_use, name})
        return rows * self.weight.shape[0] <= BASE_LOGITS_CACHE_VALUES

    def device_base_logits(self, name: str, in_use: Collection[str]) -> torch.Tensor:
        """Unshaped logits on ``self.device``: kept while ``keeps_base_logits``, else
        computed per call."""
        if name in self._base_logits:
            return self._base_logits[name]
        logits = self.logits(self.device_features(name),
                             self.device_head((self.weight, self.bias)))
        if self.keeps_base_logits(name, in_use):
            self._base_logits[name] = logits
        return logits

    def base_logits(self, name: str, in_use: Collection[str] = ()) -> torch.Tensor:
        """Unshaped logits of a split, on the CPU (treat as read-only)."""
        return self.device_base_logits(name, in_use).cpu()

    def unshaped(self, name: str, score: str, in_use: Collection[str]
                 ) -> tuple[torch.Tensor, np.ndarray]:
        """(top-1 predictions, scores) of a split's unshaped logits under the logits score
        ``score``, on the CPU: computed once, in row blocks (each page's baseline and the
        unshaped ID accuracy read them; cheap to keep where the logits are not)."""
        def make() -> tuple[torch.Tensor, np.ndarray]:
            return score_blocks(self.logit_blocks(NO_SHAPING, name, in_use), get_score(score))

        return self._unshaped.get((name, score), make)

    def unshaped_predictions(self, name: str, score: str, in_use: Collection[str]
                             ) -> torch.Tensor:
        """Top-1 predictions of a split's unshaped logits (those of any unshaped scoring
        already made, else computed along with ``score``'s scores)."""
        for key in ((name, score), *((name, s) for s in list_scores())):
            if key in self._unshaped:
                return self._unshaped.peek(key)[0]
        return self.unshaped(name, score, in_use)[0]

    # ------------------------------------------------------------------ shaped

    def check(self, setting: Setting) -> None:
        """Raise ParameterError when this store cannot serve ``setting`` (penultimate
        features serve every setting; a layer's store refuses some)."""

    def device_shaped_features(self, shaper: Shaper, name: str, in_use: Collection[str]
                               ) -> torch.Tensor:
        """A split's features shaped by ``shaper``, whole, on ``self.device`` (the kept
        features themselves for a method that leaves them unchanged)."""
        variant = shaper.spec.variant
        if variant is not None:  # stored features in place of shaping (ODIN)
            return self._on(f"variant/{variant}/{name}",
                            lambda: self.variant_features(variant, name, shaper.name))
        if shaper.spec.keeps_features:
            return self.device_features(name)
        return shaper(self.device_features(name), order=self._order(shaper, name, in_use),
                      split=name)

    def shaped_features(self, shaper: Shaper, name: str, in_use: Collection[str]
                        ) -> torch.Tensor:
        """``device_shaped_features`` on the CPU (treat as read-only)."""
        return self.device_shaped_features(shaper, name, in_use).cpu()

    def _order(self, shaper: Shaper, name: str, in_use: Collection[str]
               ) -> torch.Tensor | None:
        if not shaper.spec.uses_order(shaper.threshold_mode):
            return None
        return self.rank_order(name, in_use)

    def feature_blocks(self, shaper: Shaper, name: str, in_use: Collection[str]
                       ) -> Iterator[torch.Tensor]:
        """A split's features as ``shaper`` shapes them, in blocks of ``block_rows`` rows on
        ``self.device`` (the stored ones, sliced, for a method that shapes nothing)."""
        if shaper.spec.variant is not None or shaper.spec.keeps_features:
            yield from row_blocks(self.device_shaped_features(shaper, name, in_use))
            return
        order = self._order(shaper, name, in_use)
        x = self.device_features(name)
        yield from shaper.blocks(x, block_rows(math.prod(x.shape[1:])), order=order,
                                 split=name)

    def logit_blocks(self, shaper: Shaper, name: str, in_use: Collection[str]
                     ) -> Iterator[torch.Tensor]:
        """A split's logits with ``shaper`` applied, in row blocks on ``self.device`` (the
        unshaped logits, whole, for a method that changes neither features nor head while
        they are kept)."""
        if leaves_logits(shaper) and self.keeps_base_logits(name, in_use):
            yield self.device_base_logits(name, in_use)
            return
        weight, bias = self.device_head(shaper.head(self.weight, self.bias))
        yield from head_blocks(self.feature_blocks(shaper, name, in_use), weight, bias)

    def shaped_logits(self, shaper: Shaper, name: str, in_use: Collection[str]
                      ) -> torch.Tensor:
        """Logits of a split shaped by ``shaper``, on the CPU (the unshaped logits for a
        method that leaves features and head unchanged: treat as read-only)."""
        if leaves_logits(shaper):
            return self.device_base_logits(name, in_use).cpu()
        return gather_rows(self.logit_blocks(shaper, name, in_use),
                           len(self.bundle.split(name)), self.weight.shape[0],
                           self.device).cpu()


class Selection:
    """A store and the OOD splits scored against its ID split.

    ``Selection(bundle, ood)`` makes a store of its own (``warn``, ``device``: the
    store's); ``Selection(store, ood)`` shares ``store``. ``ood``: OOD test split names
    (None: all of them).
    """

    def __init__(self, source: Bundle | FeatureStore, ood: Iterable[str] | None = None,
                 warn: bool = True, device: DeviceLike = None):
        self.store = FeatureStore(source, device, warn) if isinstance(source, Bundle) \
            else source
        self.ood_names = [s.name for s in self.store.bundle.select_ood(ood)]

    def with_ood(self, ood: Iterable[str] | None) -> Selection:
        """The same kind of selection over the same store for other OOD test splits."""
        return self.with_splits([s.name for s in self.bundle.select_ood(ood)])

    def with_splits(self, ood_names: Iterable[str]) -> Selection:
        """The same kind of selection over the same store with ``ood_names`` scored as OOD
        as given (a search scores its validation splits too)."""
        twin = copy.copy(self)
        twin.ood_names = list(ood_names)
        return twin

    @property
    def bundle(self) -> Bundle:
        return self.store.bundle

    @property
    def device(self) -> torch.device:
        return self.store.device

    @property
    def weight(self) -> torch.Tensor:
        return self.store.weight

    @property
    def bias(self) -> torch.Tensor:
        return self.store.bias

    @property
    def id_name(self) -> str:
        return self.bundle.id_split.name

    @property
    def split_names(self) -> list[str]:
        return [self.id_name, *self.ood_names]

    def features(self, name: str) -> torch.Tensor:
        """fp32 features of a split (the store's; treat as read-only)."""
        return self.store.features(name)
