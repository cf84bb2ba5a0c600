"""The built-in shaping methods, registered in ``ash_core.registry``'s catalogue.

Recommended values are the papers' per benchmark family; search grids are OpenOOD's
(``configs/postprocessors/{ash,react,scale}.yml``: ``percentile_list``; ``gen.yml``:
``gamma_list``, ``M_list``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from . import scores, shaping
from .detectors import get_feature_score, list_feature_scores
from .params import ParamSpec, percent_grid
from .registry import FIT_FEATURES, FIT_HEAD, register_method

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

ASH_OPTIONS = dict(thresholds=("local", "global"), fit="global", fit_on=frozenset({FIT_FEATURES}),
                   family="ash", ranks=True, grid="prefix", reference="Djurisic et al., ICLR 2023")


@register_method("none", identity=True,
                 description="no shaping: the plain energy/MSP/max-logit baseline")
def _none(x, *, cutoff, seed, order=None):
    return x.clone()


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
def _ash_rand(x, *, p, cutoff, seed, order=None, generator=None):
    return shaping.ash_rand(x, p, cutoff, seed=seed, generator=generator, order=order)


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


# --------------------------------------------------------------------- methods on logits

def _unchanged(x, *, cutoff, seed, order=None, **params):
    return x.clone()


LOGIT_OPTIONS = dict(identity=True, family="logits")


register_method(
    "temp-scaling",
    params=(ParamSpec("T", 1.0, 0.0, 10000.0, "softmax temperature", low_open=True),),
    scorer=lambda logits, T: scores.temperature_msp_score(logits, T), **LOGIT_OPTIONS,
    description="temperature scaling: MSP of softmax(logits / T) (OpenOOD fits T on ID "
                "validation data; here T is set)",
    reference="Guo et al., ICML 2017",
)(_unchanged)

register_method(
    "gen",
    params=(ParamSpec("gamma", 0.1, 0.0, 100.0, "generalized-entropy exponent", low_open=True,
                      recommended={"imagenet": 0.1},
                      search_grid=(0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0)),
            ParamSpec("M", 100, 1, 100001, "number of top softmax probabilities used",
                      kind="int", recommended={"imagenet": 100},
                      search_grid=(10, 50, 100, 200, 500, 1000))),
    scorer=lambda logits, gamma, M: scores.gen_score(logits, gamma, int(M)), **LOGIT_OPTIONS,
    description="GEN: -sum over the top-M softmax probabilities of p^gamma (1-p)^gamma",
    reference="Liu et al., CVPR 2023",
)(_unchanged)


# --------------------------------------------------------------- methods on stored variants

#: how to get ODIN's variant (said when a bundle lacks it)
ODIN_HINT = ("extract it with `ash-explore extract ... --odin T,EPS` (e.g. --odin 1000,0.0014, "
             "the CIFAR defaults of Liang et al. and OpenOOD), or \"odin\": [T, EPS] in the "
             "recipe")


def odin_score(logits: torch.Tensor, temperature: float, **_settings: Any) -> torch.Tensor:
    """ODIN's score (Liang, Li & Srikant, ICLR 2018, Eq. 1-2; OpenOOD's
    ``odin_postprocessor``): the MSP of ``softmax(logits / T)``, where the logits are those
    of the input-perturbed image (the bundle's "odin" variant; the perturbation by
    ``epsilon`` is done at extraction, ``ash_core.extract.odin``)."""
    return scores.temperature_msp_score(logits, temperature)


register_method(
    "odin", variant="odin", variant_hint=ODIN_HINT, scorer=odin_score, family="input",
    description="ODIN: MSP of softmax(logits / T) on the features of input-perturbed images; "
                "T and EPS are fixed at extraction (--odin T,EPS) and read from the bundle",
    reference="Liang et al., ICLR 2018",
)(_unchanged)


# --------------------------------------------------------------------- methods on the head

def fit_dice(features: torch.Tensor, params: Mapping[str, float], head: Any
             ) -> tuple[float, torch.Tensor]:
    """DICE's fit (Sun & Li, ECCV 2022, Sec. 3; the official ``RouteDICE`` layer and
    OpenOOD's ``DICEPostprocessor``): the contribution of unit d to class c is
    ``mean_d * W[c, d]`` (``mean`` = the id_fit features' mean); the weights whose
    contribution exceeds its p-th percentile are kept, the others zeroed. Returns the
    contribution cutoff and the masked weight."""
    weight = head[0]
    rows = torch.as_tensor(np.asarray(features, dtype=np.float32)) \
        if not isinstance(features, torch.Tensor) else features
    mean = rows.reshape(rows.shape[0], -1).to(torch.float64).mean(dim=0)
    contrib = mean[None, :] * weight.to(torch.float64)
    cutoff = float(np.percentile(contrib.numpy(), params["p"]))
    return cutoff, torch.where(contrib > cutoff, weight, torch.zeros((), dtype=weight.dtype))


register_method(
    "dice",
    params=(ParamSpec("p", 90.0, 0.0, 100.0, "sparsity: share of head weights zeroed, by their "
                      "contribution on id_fit", recommended={"cifar10": 90.0, "cifar100": 90.0},
                      search_grid=(90.0,)),),
    fit="always", fit_on=frozenset({FIT_FEATURES, FIT_HEAD}), fitter=fit_dice,
    head_fn=lambda weight, bias, masked: (masked, bias), identity=True, family="head",
    description="DICE: sparsify the head, keeping the weights with the largest contribution "
                "(id_fit mean x weight); energy score",
    reference="Sun & Li, ECCV 2022",
)(_unchanged)


# --------------------------------------------------------------------- scores on features

def register_feature_score_methods() -> None:
    """Every score on features also as a method of its own (no shaping, that score), so
    ``--method knn`` works and the contract suite covers its parameters."""
    for name in list_feature_scores():
        fs = get_feature_score(name)
        register_method(
            name, description=fs.description + " (no shaping; combine with a shaping method "
            f"as --score {name})", params=fs.params, fit_on=fs.fit_on, family="features",
            reference=fs.reference, identity=True, feature_score=name,
        )(lambda x, *, cutoff, seed, order=None, **params: x.clone())


register_feature_score_methods()
