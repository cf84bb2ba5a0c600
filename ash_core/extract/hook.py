"""The layer hook: capture one layer's input or output during a forward pass, then stop."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn as nn

from ash_core.errors import ExtractError


class _Stop(Exception):
    """Raised by the hook: nothing after the hooked layer needs computing."""


def _linear_call_order(model: nn.Module, example: torch.Tensor) -> list[str]:
    names = {m: n for n, m in model.named_modules()}
    order: list[str] = []
    handles = [m.register_forward_pre_hook(lambda mod, inp: order.append(names[mod]))
               for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return order


def _candidates(model: nn.Module, k: int = 12) -> str:
    names = [n for n, _ in model.named_modules() if n]
    return ", ".join(names[-k:])


class FeatureHook:
    """Capture a layer's input (``NAME:input``, default for the final Linear) or output.

    4-D outputs are global-average-pooled; everything is flattened to [N, D]. Once captured,
    the forward pass is stopped, so extraction never costs more than a plain forward.
    """

    def __init__(self, model: nn.Module, layer: str | None, example: torch.Tensor):
        self.model = model
        modules = dict(model.named_modules())
        self.head: nn.Linear | None = None
        if layer is None:
            order = _linear_call_order(model, example)
            if not order:
                raise ExtractError(
                    f"{type(model).__name__} has no nn.Linear classifier, so the penultimate "
                    f"layer cannot be found automatically: pass --layer NAME (its output) or "
                    f"NAME:input, and --fit-head. Last modules: {_candidates(model)}."
                )
            self.name, self.mode = order[-1], "input"
            self.head = modules[self.name]  # type: ignore[assignment]
        else:
            name, _, mode = layer.partition(":")
            mode = mode or "output"
            if mode not in ("input", "output"):
                raise ExtractError(f"--layer {layer!r}: suffix must be ':input' or ':output'.")
            if name not in modules or not name:
                raise ExtractError(f"layer {name!r} not found in {type(model).__name__}; "
                                   f"candidates (last modules): {_candidates(model)}.")
            self.name, self.mode = name, mode
            if mode == "input" and isinstance(modules[name], nn.Linear):
                self.head = modules[name]  # type: ignore[assignment]
        self.module = modules[self.name]
        self.pooled = False
        self._value: torch.Tensor | None = None
        self.attach()

    def attach(self) -> None:
        """Register the hook (done on construction; see ``remove``)."""
        if self.mode == "input":
            self._handle = self.module.register_forward_pre_hook(self._pre)
        else:
            self._handle = self.module.register_forward_hook(self._post)

    def _store(self, t: torch.Tensor) -> None:
        if t.ndim == 4:
            t = t.mean(dim=(2, 3))
            self.pooled = True
        self._value = t.detach().flatten(1).float()
        raise _Stop

    def _pre(self, module: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        self._store(inp[0])

    def _post(self, module: nn.Module, inp: Any, out: torch.Tensor) -> None:
        self._store(out)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Features [N, D] (float32) of a batch."""
        self._value = None
        with contextlib.suppress(_Stop):
            self.model(x)
        if self._value is None:
            raise ExtractError(f"layer {self.name!r} was not called during the forward pass; "
                               "choose a layer on the path from input to output.")
        return self._value

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "capture": self.mode, "module": type(self.module).__name__,
                "global_avg_pool": self.pooled, "hook": f"forward {'pre-' if self.mode == 'input' else ''}hook"}

    def remove(self) -> None:
        """Unregister the hook: the model runs as without extraction."""
        self._handle.remove()

    @contextlib.contextmanager
    def paused(self):
        """The hook removed for the duration (a whole forward pass, e.g. ODIN's gradient)."""
        self.remove()
        try:
            yield
        finally:
            self.attach()


class MapHooks:
    """Capture the [N, C, H, W] (CNN) or [N, T, C] (transformer tokens) output of several
    modules (``--layers``) during the forward pass that ``FeatureHook`` runs; ``points`` maps
    a layer name to its module name."""

    def __init__(self, model: nn.Module, points: dict[str, str]):
        modules = dict(model.named_modules())
        self.points = dict(points)
        self.values: dict[str, torch.Tensor] = {}
        self._handles = [modules[point].register_forward_hook(self._make(layer))
                         for layer, point in self.points.items()]

    def _make(self, layer: str):
        def hook(module: nn.Module, inp: Any, out: torch.Tensor) -> None:
            if not isinstance(out, torch.Tensor) or out.ndim not in (3, 4):
                raise ExtractError(f"--layers {layer}: {self.points[layer]} outputs "
                                   f"{getattr(out, 'shape', type(out).__name__)}, not a "
                                   "[N, C, H, W] map or [N, T, C] tokens; choose a "
                                   "convolutional or transformer block.")
            self.values[layer] = out.detach().to(torch.float16)
        return hook

    def take(self) -> dict[str, torch.Tensor]:
        """The maps of the last forward pass (every layer must have been reached)."""
        missing = [name for name in self.points if name not in self.values]
        if missing:
            raise ExtractError(f"--layers {', '.join(missing)}: not reached before the "
                               "penultimate layer; choose blocks on the path to it.")
        values, self.values = self.values, {}
        return values

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
