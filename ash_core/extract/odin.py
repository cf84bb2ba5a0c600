"""ODIN's input perturbation, done at extraction time (it needs gradients through the model).

Liang, Li & Srikant, "Enhancing the Reliability of Out-of-distribution Image Detection in
Neural Networks", ICLR 2018, Sec. 3 ("Input preprocessing", Eq. 2): each input moves by
``epsilon`` against the gradient sign of the temperature-scaled cross-entropy of its own
predicted class,

    x' = x - epsilon * sign(-grad_x log S_yhat(x; T)),   S(x; T) = softmax(f(x) / T),

and the score is the MSP of ``softmax(f(x') / T)`` (``ash_core.methods.odin_score``, on the
stored features of x'). As in the official code (facebookresearch/odin, ``code/calData.py``)
and OpenOOD's ``openood/postprocessors/odin_postprocessor.py`` (read for this module, not
copied): the step is taken on the *normalised* input, the sign is ``+1`` where the gradient
is ``>= 0`` and ``-1`` elsewhere (``torch.ge``: a zero gradient steps by ``+epsilon``, not
0), and each channel's step is divided by that channel's normalisation std, so ``epsilon``
is a step in [0, 1] pixel units. The official code and OpenOOD v1 hard-code CIFAR's std
(63.0/255, 62.1/255, 66.7/255) for every dataset; OpenOOD v1.5 and this module use the
preprocessing's own std. No clipping to the valid pixel range (neither source clips).

Differences of batching cannot change the result: the loss is the *sum* of per-sample
terms (OpenOOD takes the batch mean, which scales every gradient by 1/N and can only
change the sign of an exactly zero or underflowing gradient), and the model is in eval
mode, so each sample's gradient depends on that sample alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ash_core.errors import ExtractError


def _bad(value: object) -> ExtractError:
    return ExtractError(f"--odin must be T,EPS: a temperature > 0 and a perturbation magnitude "
                        f">= 0, e.g. --odin 1000,0.0014 (\"odin\": [1000, 0.0014] in a recipe); "
                        f"got {value!r}.")


def check_odin(value: Sequence[float] | None) -> tuple[float, float] | None:
    """``(T, EPS)`` from a recipe's ``"odin": [T, EPS]`` (None stays None); ExtractError for
    anything but two finite numbers with T > 0 and EPS >= 0."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2 \
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise _bad(value)
    t, eps = float(value[0]), float(value[1])
    if not (0 < t < float("inf") and 0 <= eps < float("inf")):
        raise _bad(value)
    return t, eps


def parse_odin(text: str) -> tuple[float, float]:
    """``"T,EPS"`` (the ``--odin`` flag) -> ``(T, EPS)``; ExtractError otherwise."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise _bad(text) from None
    if len(values) != 2:
        raise _bad(text)
    return check_odin(values)


def perturb(logits_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
            temperature: float, epsilon: float, std: Sequence[float]) -> torch.Tensor:
    """ODIN's perturbed inputs of a normalised batch ``x`` [N, C, H, W] (a new tensor;
    ``x`` is not modified). ``logits_fn`` is the whole classifier, ``std`` the
    normalisation std per channel."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = logits_fn(x)
        if logits.ndim != 2:
            raise ExtractError(f"ODIN needs the model's class logits [N, C]; its output has "
                               f"shape {tuple(logits.shape)}.")
        predicted = logits.detach().argmax(dim=1)
        loss = F.cross_entropy(logits.float() / temperature, predicted, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    step = torch.where(grad >= 0, 1.0, -1.0).to(x.dtype)
    scale = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x.detach() - epsilon * step / scale).detach()
