"""``EvalResult``: the numbers of one evaluated setting (what ``ash-explore evaluate``
reports), whichever engine computed them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ash_core.maths.metrics import OODMetrics, average_metrics
from ash_core.maths.ties import TIE_LEVEL, TieRange, large_ties
from ash_core.setting import Setting


def group_averages(ood: Mapping[str, Mapping[str, float]],
                   groups: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """Each group's ``average_metrics`` over its OOD sets present in ``ood`` (the sets
    selected); a group with none selected is left out."""
    out = {}
    for group, members in groups.items():
        chosen = {n: ood[n] for n in members if n in ood}
        if chosen:
            out[group] = average_metrics(chosen)
    return out


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
    #: the bundle's OOD groups (``Bundle.groups``: e.g. near / far -> split names)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    #: the large ties of a result read back without its scores (a cached search result)
    stored_ties: dict[str, TieRange] | None = field(default=None, repr=False)

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

    @property
    def group_averages(self) -> dict[str, dict[str, float]]:
        """Each group's average over its OOD sets that were evaluated (groups with none
        selected are left out)."""
        return group_averages(self.ood, self.groups)

    def large_ties(self) -> dict[str, TieRange]:
        """The OOD sets whose (ID, OOD) score pairs tie above ``TIE_LEVEL``, with the AUROC
        range over tie orders (``ash_core.maths.ties``); without kept scores, those stored
        with the result (``stored_ties``), else none."""
        if self.id_scores is None or not self.ood_scores:
            return dict(self.stored_ties or {})
        return large_ties(self.id_scores, self.ood_scores)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``ash-explore evaluate --format json`` (fractions);
        ``ties`` only where some OOD set's ties are large (``large_ties``)."""
        ties = self.large_ties()
        return {
            "bundle": self.bundle,
            **self.setting.to_dict(),
            "p": self.p,
            "label": self.setting.label(),
            "fitted_threshold": self.cutoff,
            "id_accuracy": dict(self.id_accuracy),
            "ood": {name: m.as_dict() for name, m in self.ood.items()},
            "average": self.average,
            **({"groups": self.group_averages} if self.groups else {}),
            **({"variant": dict(self.variant)} if self.variant else {}),
            **({"ties": {"level": TIE_LEVEL,
                         "ood": {n: r.as_dict() for n, r in ties.items()}}} if ties else {}),
        }
