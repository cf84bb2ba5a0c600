"""ReAct (Sun, Guo & Li, "ReAct: Out-of-distribution Detection With Rectified
Activations", NeurIPS 2021): clip every activation at the p-th percentile of the id_fit
activations. Search grid: OpenOOD's ``react.yml``."""

from __future__ import annotations

from ash_core.features import FIT_FEATURES
from ash_core.maths import shaping
from ash_core.methods._registry import register_method
from ash_core.params import ParamSpec


@register_method(
    "react",
    params=(ParamSpec("p", 90.0, 0.0, 100.0, "clip at this percentile of id_fit activations",
                      recommended={"imagenet": 90.0}, search_grid=(85.0, 90.0, 95.0, 99.0)),),
    fit="always", fit_on=frozenset({FIT_FEATURES}), grid="clip",
    description="ReAct: clip activations at the p-th percentile of id_fit activations",
    reference="Sun et al., NeurIPS 2021",
)
def _react(x, *, p, cutoff, seed, order=None):
    return shaping.react(x, cutoff)
