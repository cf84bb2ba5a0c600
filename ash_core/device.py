"""Where replay maths runs: the one place that turns "auto" / "cpu" / "cuda" into a device.

Front ends default to ``"auto"`` (CUDA when a GPU is present, else the CPU): the CLI's
``--device`` on ``evaluate`` and ``sweep``, the dashboard through ``ASH_DEVICE`` (which
``ash-explore dashboard --device`` sets). The library defaults to ``ASH_DEVICE`` when set,
else the CPU, so a script (and the test suite) stays on the CPU unless it asks.

On CUDA, the exact path (``Evaluator``) shapes and runs the head on the GPU and brings
back only scores and predictions; the score cube uses its torch backend there (the
native C kernel stays the CPU path). Results equal the CPU's to float rounding: TF32 is
never enabled here, so matrix products stay full fp32.
"""

from __future__ import annotations

import os

import torch

from ash_core.errors import ParameterError

DEVICES = ("auto", "cpu", "cuda")
ENV_DEVICE = "ASH_DEVICE"

DeviceLike = str | torch.device | None


def cuda_available() -> bool:
    """Whether torch sees a usable CUDA device (a function, so tests can stand in)."""
    return torch.cuda.is_available()


def resolve_device(device: DeviceLike = "auto") -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; ``"cpu"``; ``"cuda"`` (or ``"cuda:N"``)
    only when CUDA is available. ``None`` reads ``ASH_DEVICE`` (default ``"cpu"``).

    Anything else, or ``"cuda"`` without CUDA, is a ``ParameterError`` saying what to do.
    """
    if device is None:
        device = os.environ.get(ENV_DEVICE, "").strip() or "cpu"
    if isinstance(device, torch.device):
        device = str(device)
    name = str(device).strip().lower()
    kind = name.split(":", 1)[0]
    if kind not in DEVICES or (kind != "cuda" and ":" in name):
        raise ParameterError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}.")
    if kind == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    if kind == "cuda" and not cuda_available():
        raise ParameterError(
            f"device {device!r} was asked for but CUDA is not available (no GPU, or torch "
            "built without CUDA); use --device auto or cpu."
        )
    try:
        return torch.device(name)
    except RuntimeError:
        raise ParameterError(f"unknown device {device!r}; use one of "
                             f"{', '.join(DEVICES)}.") from None


def is_cuda(device: torch.device) -> bool:
    return device.type == "cuda"
