"""``EvalResult``: the numbers of one evaluated setting (what ``ash-explore evaluate``
reports), whichever engine computed them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ash_core.maths.metrics import OODMetrics, average_metrics
from ash_core.setting import Setting


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
    params: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    id_scores: np.ndarray | None = field(default=None, repr=False)
    ood_scores: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    engine: str = "exact"  # how the numbers were computed: "exact" (Evaluator) or "cube"
    #: the settings of the stored feature variant the method read (ODIN's T and EPS)
    variant: dict[str, Any] | None = None

    @property
    def average(self) -> dict[str, float]:
        return average_metrics(self.ood)

    @property
    def setting(self) -> Setting:
        """The setting these numbers are of."""
        return Setting(self.method, self.params or ({} if self.p is None else {"p": self.p}),
                       self.threshold, self.score, self.convention, self.seed)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``ash-explore evaluate --format json`` (fractions)."""
        return {
            "bundle": self.bundle,
            **self.setting.to_dict(),
            "p": self.p,
            "label": self.setting.label(),
            "fitted_threshold": self.fitted_threshold,
            "id_accuracy": dict(self.id_accuracy),
            "ood": {name: m.as_dict() for name, m in self.ood.items()},
            "average": self.average,
            **({"variant": dict(self.variant)} if self.variant else {}),
        }
