"""ODIN (Liang, Li & Srikant, ICLR 2018): the MSP of temperature-scaled logits of
input-perturbed images, read from the bundle's stored "odin" feature variant."""

from __future__ import annotations

from typing import Any

import torch

from ash_core.maths import scores
from ash_core.methods._registry import register_method, unchanged

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
)(unchanged)
