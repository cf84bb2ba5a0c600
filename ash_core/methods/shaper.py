"""``Shaper``: a method with validated parameters, fitted on id_fit when it needs to be,
callable on features; ``create_method`` makes one from the registry's declaration."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from ash_core.errors import ParameterError
from ash_core.features import FIT_HEAD
from ash_core.methods._registry import (
    MethodSpec,
    check_seed,
    check_threshold_mode,
    get_method,
    setting_label,
)
from ash_core.params import merge_p


@dataclass
class Shaper:
    """A configured method: validated parameters, optionally fitted on id_fit, callable.

    ``fit`` computes what the method needs from ID training features (the global
    threshold, ReAct's clip value) and stores it as ``cutoff`` (a float, what the method's
    function receives as ``cutoff``); calling the shaper never mutates its input.
    """

    spec: MethodSpec
    params: Mapping[str, float] = field(default_factory=dict)
    threshold_mode: str = "local"
    seed: int = 0
    cutoff: float | None = None
    #: what else the fit produced (e.g. DICE's masked weight); None for most methods
    fitted_state: Any = None
    #: the settings of the feature variant a method reads (``spec.variant``), bound by the
    #: evaluator from the bundle's manifest, e.g. ODIN's temperature and epsilon
    variant_settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.params = MappingProxyType(dict(self.params))

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def p(self) -> float | None:
        """The parameter ``p`` (None for methods without one)."""
        return self.params.get("p")

    @property
    def needs_fit(self) -> bool:
        return self.spec.needs_fit(self.threshold_mode)

    def fit(self, id_fit_features: torch.Tensor | np.ndarray,
            head: tuple[torch.Tensor, torch.Tensor] | None = None) -> Shaper:
        """Fit what the method needs on id_fit features, and on the ``head`` (weight, bias)
        for methods fitted on it (a no-op when the method needs nothing)."""
        if not self.needs_fit:
            return self
        if FIT_HEAD in self.spec.fit_on and head is None:
            raise ParameterError(f"{self.describe()} is fitted on the linear head too; call "
                                 ".fit(id_fit_features, head=(weight, bias)).")
        cutoff, state = self.spec.fitter(id_fit_features, self.params, head)
        self.cutoff, self.fitted_state = float(cutoff), state
        return self

    def head(self, weight: torch.Tensor, bias: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The linear head this method scores with: ``(weight, bias)`` unchanged, or the
        head rewritten by a method on the head (fitted first)."""
        if self.spec.head_fn is None:
            return weight, bias
        self._check_fitted()
        return self.spec.head_fn(weight, bias, self.fitted_state)

    def _check_fitted(self) -> None:
        if self.needs_fit and self.cutoff is None:
            raise ParameterError(
                f"{self.describe()} needs statistics of the id_fit split; call "
                ".fit(id_fit_features) first (the bundle needs an 'id_fit' split)."
            )

    def __call__(self, x: torch.Tensor, order: torch.Tensor | None = None, *,
                 split: str = "", rows: int | Sequence[int] | np.ndarray = 0) -> torch.Tensor:
        """Shape ``x`` (a new tensor). ``order``: ``shaping.rank_order(x)``, if already known.
        ``split``, ``rows``: where ``x``'s rows are (the split's name; the index of its first
        row, the rows consecutive, or of every row), which a stochastic method's draws
        depend on (``ash_core.maths.draws``); other methods ignore them."""
        self._check_fitted()
        drawn = {"split": split, "rows": rows} if self.spec.stochastic else {}
        return self.spec.fn(x, cutoff=self.cutoff, seed=self.seed, order=order, **drawn,
                            **self.params)

    def blocks(self, x: torch.Tensor, rows: int, order: torch.Tensor | None = None,
               split: str = "") -> Iterator[torch.Tensor]:
        """``self(x, order)`` in successive blocks of ``rows`` rows, equal to the slices of
        the whole call, so that a split's shaped features are never held whole (410 MB
        for 50,000 ImageNet rows). Rows are shaped on their own; a stochastic method draws
        each row from its own stream (seed, ``split``, row index), whatever the block."""
        self._check_fitted()
        if rows < 1:
            raise ParameterError(f"rows per block must be >= 1, got {rows!r}.")
        for i in range(0, x.shape[0], rows):
            yield self(x[i:i + rows], None if order is None else order[i:i + rows],
                       split=split, rows=i)

    def describe(self) -> str:
        """A short label such as ``ash-s p=90 local`` (see ``setting_label``)."""
        return setting_label(self.name, self.params, self.threshold_mode)


def create_method(
    name: str,
    p: float | None = None,
    threshold_mode: str = "local",
    seed: int = 0,
    *,
    params: Mapping[str, Any] | None = None,
) -> Shaper:
    """Validate every parameter in one place and return a ready-to-use (unfitted) shaper.

    ``params`` maps parameter names to values; parameters not given take the method's
    declared defaults. ``p=`` is shorthand for ``params={"p": ...}``. ``threshold_mode`` is
    the threshold *mode* ("local" or "global").
    """
    spec = get_method(name)
    check_threshold_mode(spec, threshold_mode)
    values = spec.validate_params(merge_p(params, p))
    return Shaper(spec=spec, params=values, threshold_mode=threshold_mode, seed=check_seed(seed))
