"""OOD scores computed from logits; higher always means more in-distribution."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ash_core.errors import ParameterError

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def energy_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Negative free energy: ``T * logsumexp(logits / T)`` (Liu et al., 2020)."""
    if not temperature > 0:
        raise ParameterError(f"temperature must be > 0, got {temperature!r}.")
    logits = logits.to(torch.float32)
    return temperature * torch.logsumexp(logits / temperature, dim=1)


def msp_score(logits: torch.Tensor) -> torch.Tensor:
    """Maximum softmax probability (Hendrycks & Gimpel, 2017), computed in float64.

    In float32 the MSP rounds to exactly 1.0 once the top-2 logit gap exceeds ~17, which
    shaped (e.g. ASH-S-scaled) logits routinely reach; those artificial ties change
    AUROC/FPR95. float64 postpones the saturation to a gap of ~37.
    """
    return torch.softmax(logits.to(torch.float64), dim=1).amax(dim=1)


def maxlogit_score(logits: torch.Tensor) -> torch.Tensor:
    """Maximum logit (Hendrycks et al., 2022)."""
    return logits.to(torch.float32).amax(dim=1)


SCORES: dict[str, tuple[ScoreFn, str]] = {
    "energy": (energy_score, "energy score T*logsumexp(logits/T), T=1"),
    "msp": (msp_score, "maximum softmax probability"),
    "maxlogit": (maxlogit_score, "maximum logit"),
}


def list_scores() -> list[str]:
    """Names of every available score."""
    return list(SCORES)


def get_score(name: str) -> ScoreFn:
    """The score function registered as ``name``."""
    try:
        return SCORES[name][0]
    except KeyError:
        raise ParameterError(
            f"unknown score {name!r}; choose one of: {', '.join(SCORES)}."
        ) from None


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy as a fraction in [0, 1]."""
    return prediction_accuracy(logits.argmax(dim=1), labels)


def prediction_accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of top-1 predictions (class indices) as a fraction in [0, 1]."""
    if labels.numel() == 0:
        raise ParameterError("cannot compute accuracy on an empty split.")
    return float((predictions.cpu() == labels.to(torch.long)).to(torch.float64).mean())


def temperature_msp_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """MSP of temperature-scaled logits, ``max_c softmax(logits / T)_c`` (temperature
    scaling, Guo et al., ICML 2017, "On Calibration of Modern Neural Networks", Sec. 4.2;
    OpenOOD's ``temp_scaling`` postprocessor), computed in float64 like ``msp_score``."""
    if not temperature > 0:
        raise ParameterError(f"temperature must be > 0, got {temperature!r}.")
    return msp_score(logits.to(torch.float64) / float(temperature))


def gen_score(logits: torch.Tensor, gamma: float = 0.1, m: int = 100) -> torch.Tensor:
    """GEN, the generalized-entropy score (Liu, Lochman & Zach, CVPR 2023, "GEN: Pushing
    the Limits of Softmax-Based Out-of-Distribution Detection", Eq. 6-7):
    ``-sum over the M largest softmax probabilities p of p**gamma * (1 - p)**gamma``
    (all classes when M exceeds them, as the official code's ``[:, -M:]`` slice).
    Higher = more ID. Computed in float64."""
    if not gamma > 0:
        raise ParameterError(f"GEN gamma must be > 0, got {gamma!r}.")
    if not m >= 1:
        raise ParameterError(f"GEN M must be >= 1, got {m!r}.")
    probs = torch.softmax(logits.to(torch.float64), dim=1)
    top = torch.topk(probs, min(int(m), probs.shape[1]), dim=1).values
    return -(top.pow(gamma) * (1.0 - top).pow(gamma)).sum(dim=1)
