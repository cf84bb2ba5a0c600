"""``--model timm:NAME``: any ``timm.create_model`` architecture, built offline and loaded from
a local state dict.

``NAME`` may carry ``create_model`` keyword arguments as ``?key=value&...`` (values read as
Python literals: ``timm:vit_tiny_patch16_224?img_size=32&num_classes=10``), so a fine-tuned
checkpoint's head size or input size can be matched. The model is always created with
``pretrained=False``: nothing is downloaded. Its weights come from ``--weights FILE`` (read
with ``weights_only=True`` or from safetensors, the files timm's
``pretrained_cfg_overlay=dict(file=...)`` takes); a checkpoint in the architecture's original
layout goes through timm's own ``checkpoint_filter_fn`` when its keys do not fit as they are,
and one in ``efficientnet_lite_pytorch``'s layout is renamed (``extract.layouts``).
Without weights the model is refused unless random initialisation is asked for explicitly.
The project's own timm architectures (``ash_core.models.vit_cifar``) are registered first, so
their names work here too.

The penultimate features are the pre-logits, ``model.forward_head(x, pre_logits=True)``: the
input of the model's own classifier (``get_classifier()``), captured there, so the head stored
in the bundle is that classifier. Preprocessing is timm's ``resolve_data_config``.
"""

from __future__ import annotations

import ast
import difflib
import math
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import torch
import torch.nn as nn

from ash_core.errors import ModelError
from ash_core.extract.layouts import from_package_layout, is_efficientnet_lite_package
from ash_core.extract.loaded import LoadedModel, load_state, read_state_dict, state_mismatch

PREFIX = "timm:"

NO_WEIGHTS = ("{name} has no weights: timm models are never downloaded here. Pass --weights "
              "FILE (a state dict .pth/.bin/.safetensors, e.g. the model.safetensors of the "
              "model's Hugging Face hub page, downloaded by you), or --random-init for a "
              "randomly initialised model (seeded; tests and demos only).")


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_timm_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``timm:NAME?key=value&...`` -> (NAME, create_model keyword arguments)."""
    text = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    name, _, query = text.partition("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ModelError(f"bad model arguments {query!r} in {spec!r}; use "
                         "timm:NAME?key=value&key=value.") from None
    kwargs = {k: _literal(v) for k, v in pairs}
    if "pretrained" in kwargs:
        raise ModelError(f"{spec!r}: timm models are created with pretrained=False (nothing "
                         "is downloaded); give the weights with --weights FILE.")
    return name, kwargs


def _create(name: str, kwargs: dict[str, Any], spec: str) -> nn.Module:
    import timm

    # the project's own timm architectures register themselves when imported
    import ash_core.models.vit_cifar  # noqa: F401

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"unknown timm model {name!r}.{hint} See timm.list_models('PATTERN').")
    # seeded, so a randomly initialised model (and the head left where weights lack one) is
    # the same in every run and a resumed extraction never mixes two initialisations
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            return timm.create_model(name, pretrained=False, **kwargs)
        except TypeError as exc:
            raise ModelError(f"timm cannot build {spec!r}: {exc}.") from None


def _load_weights(model: nn.Module, path: Path, spec: str) -> str | None:
    """Load ``path`` into ``model``; returns a note when the checkpoint was converted from
    another layout (efficientnet_lite_pytorch's, or the architecture's original one by timm's
    own checkpoint filter)."""
    sd = read_state_dict(path)
    note = None
    if state_mismatch(model, sd) and is_efficientnet_lite_package(sd):
        sd = from_package_layout(model, sd, spec)
        note = "renamed from efficientnet_lite_pytorch's layout (ash_core.extract.layouts)"
    elif state_mismatch(model, sd):
        module = sys.modules.get(type(model).__module__)
        convert = getattr(module, "checkpoint_filter_fn", None)
        if callable(convert):
            try:
                converted = convert(dict(sd), model)
            except Exception:  # noqa: BLE001 - a filter that fails leaves the original error
                converted = None
            if isinstance(converted, dict) and not state_mismatch(model, converted):
                sd, note = converted, f"converted by {module.__name__}.checkpoint_filter_fn"
    load_state(model, sd, str(path))
    return note


def _classifier_name(model: nn.Module, spec: str) -> str:
    head = model.get_classifier()
    if not isinstance(head, nn.Module):  # distilled models have two heads
        raise ModelError(f"{spec}: get_classifier() returns {type(head).__name__}, not one "
                         "module; models with several heads (distilled) are not supported.")
    for name, module in model.named_modules():
        if module is head and name:
            return name
    raise ModelError(f"{spec}: its classifier is not a submodule; pass --layer NAME:input.")


def _class_names(model: nn.Module) -> tuple[str, ...] | None:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    n = getattr(model, "num_classes", 0)
    names = cfg.get("label_names")
    if names and len(names) == n:
        return tuple(str(x) for x in names)
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(model)
    if subset is None:
        return None
    lemmas = ImageNetInfo(subset).label_descriptions()
    return tuple(d.split(",")[0].strip() for d in lemmas) if len(lemmas) == n else None


def data_config(model: nn.Module, kwargs: dict[str, Any]) -> dict[str, Any]:
    """timm's ``resolve_data_config`` for this model; an ``img_size`` given at creation is its
    input size (the pretrained config keeps the size of the original weights)."""
    from timm.data import resolve_data_config

    args: dict[str, Any] = {}
    if "img_size" in kwargs:
        size = kwargs["img_size"]
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        args["input_size"] = (int(kwargs.get("in_chans", 3)), int(h), int(w))
    # the test size where the pretrained config has one, as timm's own validate.py does
    cfg = resolve_data_config(args, model=model, use_test_size=True)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}


def load_timm(spec: str, weights_file: Path | None, random_init: bool) -> LoadedModel:
    """A timm model (eval mode, CPU) with its weights, preprocessing, classifier and classes."""
    name, kwargs = parse_timm_spec(spec)
    if weights_file is None and not random_init:
        raise ModelError(NO_WEIGHTS.format(name=spec))
    model = _create(name, kwargs, spec)
    notes: dict[str, Any] = {"family": "timm", "architecture": name, "model_args": kwargs}
    if weights_file is not None:
        converted = _load_weights(model, weights_file, spec)
        if converted:
            notes["weights_layout"] = converted
    else:
        notes["warning"] = "random initialisation (seed 0; --random-init, no --weights given)"
    model.eval()
    cfg = data_config(model, kwargs)
    channels, h, w = cfg["input_size"]
    if h != w:
        raise ModelError(f"{spec}: input size {h}x{w} is not square; pass img_size=N.")
    if cfg.get("crop_mode", "center") != "center":
        notes["crop_mode"] = (f"timm's crop_mode {cfg['crop_mode']!r} is applied as a center "
                              "crop after resizing the shorter side")
    notes["data_config"] = {**cfg, "source": "timm.data.resolve_data_config"}
    head = _classifier_name(model, spec)
    notes["penultimate"] = (f"pre-logits: the input of the classifier {head!r} "
                            "(= forward_head(x, pre_logits=True))")
    return LoadedModel(model, spec, int(h), int(channels), tuple(cfg["mean"]),
                       tuple(cfg["std"]), "model", _class_names(model), notes=notes,
                       resize=math.floor(h / float(cfg.get("crop_pct") or 1.0)),
                       interpolation=str(cfg.get("interpolation") or "bilinear"),
                       head_layer=f"{head}:input")
