"""ASH (Djurisic et al., "Extremely Simple Activation Shaping for Out-of-Distribution
Detection", ICLR 2023): prune each sample's units below its p-th percentile, then keep
(ASH-P), binarise (ASH-B), scale (ASH-S) or randomise (ASH-RAND) the survivors.

Recommended values are the paper's per benchmark family (Table 1/5); the search grid is
OpenOOD's (``configs/postprocessors/ash.yml``: ``percentile_list``).
"""

from __future__ import annotations

from ash_core.features import FIT_FEATURES
from ash_core.maths import shaping
from ash_core.methods._registry import register_method
from ash_core.params import ParamSpec, percent_grid

#: OpenOOD's ASH/SCALE search grid: p = 65, 70, ..., 95
OPENOOD_P_GRID = percent_grid(65, 95, 5)

P_HELP = "pruning percentile: units below the sample's p-th percentile are dropped"


def ash_param(recommended: dict[str, float]) -> ParamSpec:
    """ASH's ``p`` with one variant's recommended values (Djurisic et al., Table 1/5)."""
    return ParamSpec("p", 65.0, 0.0, 100.0, P_HELP, recommended=recommended,
                     search_grid=OPENOOD_P_GRID)


#: the generic ASH percentile (ASH-P and ASH-RAND have no per-benchmark recommendation)
P_ASH = ParamSpec("p", 65.0, 0.0, 100.0, P_HELP, search_grid=OPENOOD_P_GRID)
P_ASH_S = ash_param({"imagenet": 90.0, "cifar10": 95.0, "cifar100": 90.0})
P_ASH_B = ash_param({"imagenet": 65.0, "cifar10": 95.0, "cifar100": 85.0})

ASH_OPTIONS = dict(threshold_modes=("local", "global"), fit="global",
                   fit_on=frozenset({FIT_FEATURES}), family="ash", ranks=True, grid="prefix",
                   reference="Djurisic et al., ICLR 2023")


@register_method("ash-p", params=(P_ASH,), **ASH_OPTIONS,
                 description="ASH-P: prune units below the p-th percentile, keep survivors' values")
def _ash_p(x, *, p, cutoff, seed, order=None):
    return shaping.ash_p(x, p, cutoff, order=order)


@register_method("ash-b", params=(P_ASH_B,), **ASH_OPTIONS,
                 description="ASH-B: prune, then set every survivor to s1/k (binarise)")
def _ash_b(x, *, p, cutoff, seed, order=None):
    return shaping.ash_b(x, p, cutoff, order=order)


@register_method("ash-s", params=(P_ASH_S,), **ASH_OPTIONS,
                 description="ASH-S: prune, then scale survivors by exp(s1/s2)")
def _ash_s(x, *, p, cutoff, seed, order=None):
    return shaping.ash_s(x, p, cutoff, order=order)


@register_method("ash-rand", params=(P_ASH,), **ASH_OPTIONS, stochastic=True,
                 description="ASH-RAND: prune, then set survivors to uniform(0, 10) draws "
                             "(seeded)")
def _ash_rand(x, *, p, cutoff, seed, order=None, split="", rows=0):
    return shaping.ash_rand(x, p, cutoff, seed=seed, split=split, rows=rows, order=order)
