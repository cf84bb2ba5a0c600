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
    #: the setting these numbers are of (validated)
    setting: Setting
    id_accuracy: dict[str, float | None]
    ood: dict[str, OODMetrics]
    cutoff: float | None = None
    id_scores: np.ndarray | None = field(default=None, repr=False)
    ood_scores: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    engine: str = "exact"  # how the numbers were computed: "exact" (Evaluator) or "cube"
    #: the settings of the stored feature variant the method read (ODIN's T and EPS)
    variant: dict[str, Any] | None = None

    @property
    def method(self) -> str:
        return self.setting.method

    @property
    def params(self) -> dict[str, float]:
        return dict(self.setting.params)

    @property
    def p(self) -> float | None:
        return self.setting.p

    @property
    def threshold_mode(self) -> str:
        return self.setting.threshold_mode

    @property
    def score(self) -> str:
        return self.setting.score

    @property
    def convention(self) -> str:
        return self.setting.convention

    @property
    def seed(self) -> int:
        return self.setting.seed

    @property
    def average(self) -> dict[str, float]:
        return average_metrics(self.ood)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``ash-explore evaluate --format json`` (fractions)."""
        return {
            "bundle": self.bundle,
            **self.setting.to_dict(),
            "p": self.p,
            "label": self.setting.label(),
            "fitted_threshold": self.cutoff,
            "id_accuracy": dict(self.id_accuracy),
            "ood": {name: m.as_dict() for name, m in self.ood.items()},
            "average": self.average,
            **({"variant": dict(self.variant)} if self.variant else {}),
        }
