"""Model loading for extraction: built-in CIFAR ResNets and MNIST CNN, torchvision models by
name, timm and Hugging Face models (``timm_models``, ``hf_models``), user models given as
``module:factory``, and the MobileNetV2 backbone key renaming.

Everything here is free of CLI concerns: ``load_model`` returns a :class:`LoadedModel` that
says how to preprocess inputs (size, channels, normalisation) and where its weights came from.
Weights are only ever read with ``torch.load(..., weights_only=True)`` (never unpickled).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ash_core.bundle import sha256_file
from ash_core.errors import ModelError
from ash_core.extract.hf_models import PREFIX as HF_PREFIX
from ash_core.extract.hf_models import load_hf
from ash_core.extract.loaded import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PACKAGE_PREFIX,
    LoadedModel,
    load_state,
    package_weights,
    read_state_dict,
)
from ash_core.extract.timm_models import PREFIX as TIMM_PREFIX
from ash_core.extract.timm_models import load_timm
from ash_core.models.architectures import CifarResNet, MnistCNN

__all__ = ["BUILTIN", "CifarResNet", "LoadedModel", "MnistCNN", "builtin_names", "load_model",
           "load_state", "read_state_dict", "rename_mobilenet_v2_backbone"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
DIGITS = tuple(str(i) for i in range(10))


_MBV2_BLOCK = re.compile(r"^features\.(\d+)\.conv\.(\d+)\.(.+)$")


def rename_mobilenet_v2_backbone(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the flat ``features.B.conv.I.*`` layout to torchvision's ``mobilenet_v2`` keys.

    Expanded blocks: I 0->0.0, 1->0.1, 3->1.0, 4->1.1, 6->2, 7->3; block 1 (no expansion
    layer): 0->0.0, 1->0.1, 3->1, 4->2 (see ``../shared/data/README.md``).
    """
    general = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
    first = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        m = _MBV2_BLOCK.match(key)
        if m:
            block, idx, rest = m.groups()
            table = first if block == "1" else general
            if idx not in table:
                raise ModelError(f"unexpected MobileNetV2 backbone key {key!r}.")
            key = f"features.{block}.conv.{table[idx]}.{rest}"
        out[key] = value
    return out


# --------------------------------------------------------------------------- registry


def _cifar_resnet(depth: int) -> Callable[[], LoadedModel]:
    def build() -> LoadedModel:
        return LoadedModel(CifarResNet(depth), f"cifar_resnet{depth}", 32, 3, IMAGENET_MEAN,
                           IMAGENET_STD, "cifar", CIFAR10_CLASSES)
    return build


def _mnist_cnn() -> LoadedModel:
    # Normalisation measured on the MNIST test set: (0.1307, 0.3081) gives 99.06%, raw [0, 1]
    # inputs 98.53%, (0.5, 0.5) 97.25%; so the standard MNIST statistics are used.
    return LoadedModel(MnistCNN(), "mnist_cnn", 28, 1, (0.1307,), (0.3081,), "mnist", DIGITS)


def _mobilenet_v2_backbone() -> LoadedModel:
    import torchvision

    model = torchvision.models.mobilenet_v2(weights=None)
    return LoadedModel(model, "mobilenet_v2_backbone", 224, 3, IMAGENET_MEAN, IMAGENET_STD,
                       "imagenet", None,
                       notes={"note": "torchvision mobilenet_v2 with a backbone-only state dict "
                                      "(renamed keys); the head must be fitted (--fit-head)"})


BUILTIN: dict[str, Callable[[], LoadedModel]] = {
    "cifar_resnet20": _cifar_resnet(20),
    "cifar_resnet32": _cifar_resnet(32),
    "cifar_resnet44": _cifar_resnet(44),
    "cifar_resnet56": _cifar_resnet(56),
    "mnist_cnn": _mnist_cnn,
    "mobilenet_v2_backbone": _mobilenet_v2_backbone,
}


def builtin_names() -> list[str]:
    return sorted(BUILTIN)


def _torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _hub_cached(url: str) -> bool:
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()


def _torchvision_model(name: str, weights_enum: str | None, download: bool,
                       num_classes: int | None) -> LoadedModel:
    import torchvision

    kwargs: dict[str, Any] = {}
    classes: tuple[str, ...] | None = None
    size, mean, std, protocol = 224, IMAGENET_MEAN, IMAGENET_STD, "imagenet"
    weights_obj = None
    if weights_enum:
        try:
            enum = torchvision.models.get_model_weights(name)
            weights_obj = enum.DEFAULT if weights_enum == "DEFAULT" else enum[weights_enum]
        except KeyError:
            choices = ["DEFAULT", *[w.name for w in torchvision.models.get_model_weights(name)]]
            raise ModelError(f"{name} has no torchvision weights {weights_enum!r}; choose one of "
                             f"{', '.join(choices)}.") from None
        if not download and not _hub_cached(weights_obj.url):
            raise ModelError(
                f"torchvision weights {name}:{weights_obj.name} are not in the local cache "
                f"({torch.hub.get_dir()}); pass --download to fetch them from {weights_obj.url} "
                "(downloads are never done without asking)."
            )
        classes = tuple(weights_obj.meta.get("categories") or ()) or None
        tf = weights_obj.transforms()
        crop = getattr(tf, "crop_size", [224])
        size = int(crop[0] if isinstance(crop, (list, tuple)) else crop)
        mean, std = tuple(tf.mean), tuple(tf.std)
    elif num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = torchvision.models.get_model(name, weights=weights_obj, **kwargs)
    return LoadedModel(model, name, size, 3, mean, std, protocol, classes,
                       weights=f"torchvision:{weights_obj.name}" if weights_obj else None)


def _factory_model(spec: str) -> LoadedModel:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"cannot import module {module_name!r} for --model {spec!r} ({exc}); "
                         "is it on PYTHONPATH?") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelError(f"{module_name} has no callable {attr!r}; --model MODULE:FACTORY must "
                         "name a function or class that returns an nn.Module.")
    made = factory()
    if isinstance(made, LoadedModel):
        return made
    if not isinstance(made, nn.Module):
        raise ModelError(f"{spec} returned {type(made).__name__}, not an nn.Module.")
    return LoadedModel(made, spec, 224, 3, IMAGENET_MEAN, IMAGENET_STD, "imagenet")


def _prefixed_model(name: str, weights_file: Path | None, enum_name: str | None,
                    random_init: bool) -> LoadedModel:
    """``timm:NAME`` or ``hf:PATH``, loaded by their own modules."""
    if enum_name:
        raise ModelError(f"--weights for {name} must be a file, not {enum_name!r}.")
    if name.startswith(TIMM_PREFIX):
        lm = load_timm(name, weights_file, random_init)
    else:
        lm = load_hf(name, weights_file)
    if weights_file is not None:
        lm.weights, lm.weights_sha256 = str(weights_file), sha256_file(weights_file)
    lm.model.eval()
    return lm


def load_model(name: str, weights: str | Path | None = None, *, download: bool = False,
               num_classes: int | None = None, random_init: bool = False) -> LoadedModel:
    """Build a model by name and load its weights (eval mode, CPU).

    ``name`` is a built-in (``cifar_resnet20`` ... ``mnist_cnn``, ``mobilenet_v2_backbone``),
    a torchvision classification model (``resnet50``, ``vit_b_16`` ...), ``timm:NAME``
    (``extract.timm_models``), ``hf:PATH`` (``extract.hf_models``) or ``module:factory``.
    ``weights`` is a state-dict file, ``package:MODULE[/FILE]`` (a file shipped in an
    installed package, recorded under that name rather than its path on this machine), or for
    torchvision models a weights enum name (``DEFAULT``, ``IMAGENET1K_V2``), fetched only
    when ``download`` is true or already cached. A timm model without ``weights`` is refused
    unless ``random_init``; built-ins without weights are randomly initialised (seeded, so
    every run builds the same model) with a warning in the manifest.
    """
    if weights is not None and str(weights).startswith(PACKAGE_PREFIX):
        path, label, info = package_weights(str(weights))
        lm = load_model(name, path, download=download, num_classes=num_classes,
                        random_init=random_init)
        lm.weights = label
        lm.notes["weights_package"] = info
        return lm
    weights_file: Path | None = None
    enum_name: str | None = None
    if weights is not None:
        text = str(weights)
        if re.fullmatch(r"[A-Z0-9_]+", text) and not Path(text).exists():
            enum_name = text
        else:
            weights_file = Path(text)
            if not weights_file.is_file():
                raise ModelError(f"weights file {weights_file} does not exist; check the path "
                                 "(relative paths are resolved from the current directory).")
    if name.startswith((TIMM_PREFIX, HF_PREFIX)):
        return _prefixed_model(name, weights_file, enum_name, random_init)
    # seeded: what weights leave at random init is the same in every run and process, so a
    # resumed extraction's chunks all come from one model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        lm = _built(name, enum_name, download, weights_file, num_classes)
    if weights_file is not None:
        sd = read_state_dict(weights_file)
        allow: Callable[[str], bool] = lambda k: False  # noqa: E731
        if lm.name == "mobilenet_v2_backbone" or (
            name == "mobilenet_v2" and any(_MBV2_BLOCK.match(k) for k in sd)
            and "features.1.conv.3.weight" in sd
        ):
            sd = rename_mobilenet_v2_backbone(sd)
            allow = lambda k: k.startswith("classifier.")  # noqa: E731
            lm.notes["renamed_keys"] = "mobilenet_v2 backbone layout -> torchvision"
            lm.notes["head"] = "absent in the weights (classifier.* left at random init)"
        load_state(lm.model, sd, str(weights_file), allow)
        lm.weights = str(weights_file)
        lm.weights_sha256 = sha256_file(weights_file)
    elif lm.name in BUILTIN and lm.name != "mobilenet_v2_backbone":
        lm.notes["warning"] = "random initialisation (no --weights given)"
    lm.model.eval()
    return lm


def _built(name: str, enum_name: str | None, download: bool, weights_file: Path | None,
           num_classes: int | None) -> LoadedModel:
    """A built-in, MODULE:FACTORY or torchvision model, before its weights are loaded."""
    if name in BUILTIN:
        if enum_name:
            raise ModelError(f"{name} is a built-in model; --weights must be a file, "
                             f"not {enum_name!r}.")
        return BUILTIN[name]()
    if ":" in name:
        return _factory_model(name)
    if name not in _torchvision_names():
        raise ModelError(
            f"unknown model {name!r}. Use a built-in ({', '.join(builtin_names())}), a "
            f"torchvision classification model (e.g. resnet50, mobilenet_v2, densenet121, "
            "vit_b_16; see torchvision.models.list_models()), timm:NAME, hf:PATH or "
            "MODULE:FACTORY for your own."
        )
    return _torchvision_model(name, enum_name, download,
                              num_classes if weights_file is None else None)
