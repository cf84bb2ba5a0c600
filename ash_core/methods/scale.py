"""SCALE (Xu et al., "Scaling for Training Time and Post-hoc Out-of-distribution
Detection Enhancement", ICLR 2024): multiply the unpruned features by ASH-S's factor
exp(s1/s2(p)). Search grid: OpenOOD's ``scale.yml``."""

from __future__ import annotations

from ash_core.maths import shaping
from ash_core.methods._registry import register_method
from ash_core.methods.ash import OPENOOD_P_GRID
from ash_core.params import ParamSpec


@register_method(
    "scale",
    params=(ParamSpec("p", 85.0, 0.0, 100.0, "percentile defining s2",
                      recommended={"imagenet": 85.0}, search_grid=OPENOOD_P_GRID),),
    ranks=True, grid="row-scale",
    description="SCALE: multiply unpruned features by the ASH-S factor exp(s1/s2(p))",
    reference="Xu et al., ICLR 2024",
)
def _scale(x, *, p, cutoff, seed, order=None):
    return shaping.scale(x, p, order=order)
