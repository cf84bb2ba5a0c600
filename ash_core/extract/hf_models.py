"""``--model hf:PATH``: a local Hugging Face image-classification model directory (the
optional ``hf`` extra, ``transformers``; imported only here, only when asked for).

The model comes from ``AutoModelForImageClassification.from_pretrained(PATH,
local_files_only=True)`` (nothing is downloaded), its preprocessing from the directory's own
image processor (``AutoImageProcessor``: size, mean, std, resample), its classes from
``config.id2label``. The penultimate features are the input of the model's classifier
(``model.classifier``, or its final Linear when it is a small Sequential), so the head stored
in the bundle is that classifier: for ViT, the CLS token after the final LayerNorm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ash_core.errors import ModelError
from ash_core.extract.loaded import LoadedModel

PREFIX = "hf:"

#: PIL's resampling numbers (what image processors store) -> the protocol's names
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


class HFLogits(nn.Module):
    """The Hugging Face model as a plain ``images -> logits`` module, the interface the
    feature hook, ODIN and the layer tails call."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values=x).logits


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ModelError("--model hf:PATH needs the optional 'hf' extra (transformers): "
                         "pip install 'ash-explorer[hf]'.") from None
    return transformers


def _field(obj: Any, key: str) -> Any:
    """``size['height']`` or ``size.height``: processors keep sizes as dicts or SizeDicts."""
    if obj is None:
        return None
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def preprocessing(proc: Any, path: Path) -> tuple[int, int | None, dict[str, Any]]:
    """(input size, resize of the shorter side or None, the recorded processor config)."""
    size, crop = getattr(proc, "size", None), getattr(proc, "crop_size", None)
    height, width, edge = _field(size, "height"), _field(size, "width"), \
        _field(size, "shortest_edge")
    resize: int | None = None
    if getattr(proc, "do_center_crop", False) and _field(crop, "height"):
        side, resize = int(_field(crop, "height")), int(edge or height)
        if _field(crop, "width") != side:
            raise ModelError(f"{path}: crop size {crop} is not square.")
    elif edge and getattr(proc, "crop_pct", None):  # ConvNeXt-style: resize edge/crop_pct, crop
        side, resize = int(edge), int(edge / proc.crop_pct)
    elif height and width:
        if height != width:
            raise ModelError(f"{path}: the image processor's size {height}x{width} is not "
                             "square; extraction center-crops square inputs.")
        side = int(height)
    elif edge:
        side = int(edge)
    else:
        raise ModelError(f"{path}: cannot tell the input size from the image processor "
                         f"(size {size}).")
    resample = getattr(proc, "resample", 2)
    resample = getattr(resample, "value", resample)
    interp = _RESAMPLE.get(resample, resample if isinstance(resample, str) else None)
    if interp not in _RESAMPLE.values():
        raise ModelError(f"{path}: unknown resample {resample!r} in the image processor.")
    scale = getattr(proc, "rescale_factor", 1 / 255) if getattr(proc, "do_rescale", True) else 1
    if abs(float(scale) - 1 / 255) > 1e-9:
        raise ModelError(f"{path}: the image processor rescales by {scale}, not 1/255; "
                         "extraction scales pixels to [0, 1].")
    recorded = {"source": f"{type(proc).__name__} ({path.name})", "size": side,
                "resize_shorter_side": resize, "interpolation": interp,
                "image_mean": list(getattr(proc, "image_mean", None) or ()),
                "image_std": list(getattr(proc, "image_std", None) or ())}
    if height and width and resize is None:
        recorded["note"] = ("the processor resizes to height x width; extraction resizes the "
                            "shorter side and center-crops, the same for square images")
    return side, resize, recorded


def _classifier_name(model: nn.Module, net: nn.Module, path: Path) -> str:
    head = getattr(net, "classifier", None)
    if isinstance(head, nn.Sequential):  # e.g. ResNet: Flatten then Linear
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        head = linears[-1] if linears else head
    if not isinstance(head, nn.Linear):
        raise ModelError(f"{path}: {type(net).__name__} has no Linear 'classifier' "
                         f"({type(head).__name__}); pass --layer NAME:input for its head.")
    return next(name for name, m in model.named_modules() if m is head)


def load_hf(spec: str, weights_file: Path | None) -> LoadedModel:
    """A Hugging Face model directory as a LoadedModel (eval mode, CPU)."""
    path = Path(spec[len(PREFIX):] if spec.startswith(PREFIX) else spec).expanduser()
    if weights_file is not None:
        raise ModelError(f"{spec}: the weights come from the model directory; drop --weights.")
    if not (path / "config.json").is_file():
        raise ModelError(f"{spec}: {path} is not a Hugging Face model directory (no "
                         "config.json); save one with model.save_pretrained(PATH) and "
                         "processor.save_pretrained(PATH).")
    tf = _transformers()
    try:
        net = tf.AutoModelForImageClassification.from_pretrained(path, local_files_only=True)
        proc = tf.AutoImageProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load {spec} offline: {str(exc).splitlines()[0][:300]}") \
            from None
    net.eval()
    model = HFLogits(net).eval()
    side, resize, recorded = preprocessing(proc, path)
    mean = tuple(recorded["image_mean"]) or (0.0,) * 3
    std = tuple(recorded["image_std"]) or (1.0,) * 3
    if not getattr(proc, "do_normalize", True):
        mean, std = (0.0,) * len(mean), (1.0,) * len(std)
    id2label = getattr(net.config, "id2label", None) or {}
    classes = tuple(str(id2label.get(i, i)) for i in range(len(id2label))) or None
    head = _classifier_name(model, net, path)
    notes = {"family": "huggingface", "hf_class": type(net).__name__,
             "data_config": recorded,
             "penultimate": f"the input of the classifier {head!r} (pre-logits)"}
    weights = [p for p in (path / "model.safetensors", path / "pytorch_model.bin") if p.is_file()]
    lm = LoadedModel(model, spec, side, int(getattr(net.config, "num_channels", 3)), mean,
                     std, "model", classes, notes=notes, resize=resize,
                     interpolation=recorded["interpolation"], head_layer=f"{head}:input")
    if weights:
        from ash_core.bundle import sha256_file

        lm.weights, lm.weights_sha256 = str(weights[0]), sha256_file(weights[0])
    return lm
