"""Preprocessing protocols: how an image becomes a model input (resize, crop, normalise)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ash_core.errors import DataError


@dataclass(frozen=True)
class Protocol:
    """How an image becomes a model input.

    The image is converted to ``channels`` (grayscale is replicated to 3 channels for RGB
    models), resized so its shorter side is ``resize`` (``interpolation``: bilinear unless the
    model's own config says otherwise, antialiased) and center-cropped to ``crop`` x ``crop``;
    images already ``crop`` x ``crop`` are left as they are. Then scaled to [0, 1] and
    normalised with ``mean``/``std``.
    """

    name: str
    resize: int
    crop: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"

    def describe(self) -> dict[str, Any]:
        return {"protocol": self.name, "resize_shorter_side": self.resize, "center_crop": self.crop,
                "channels": self.channels, "grayscale_to_rgb": self.channels == 3,
                "interpolation": f"{self.interpolation} (PIL, antialiased)", "scale": "1/255",
                "mean": list(self.mean), "std": list(self.std)}

    def to_pil(self, img: Image.Image | np.ndarray) -> Image.Image:
        """Resize/crop to the model's input size, in the model's channel mode (uint8)."""
        if isinstance(img, np.ndarray):
            img = Image.fromarray(img.squeeze(-1) if img.ndim == 3 and img.shape[2] == 1 else img)
        img = img.convert("RGB" if self.channels == 3 else "L")
        w, h = img.size
        if (w, h) == (self.crop, self.crop):
            return img
        scale = self.resize / min(w, h)
        nw, nh = max(self.resize, round(w * scale)), max(self.resize, round(h * scale))
        img = img.resize((nw, nh), RESAMPLE[self.interpolation])
        left, top = (nw - self.crop) // 2, (nh - self.crop) // 2
        return img.crop((left, top, left + self.crop, top + self.crop))

    def to_uint8(self, img: Image.Image | np.ndarray) -> np.ndarray:
        """[H, W, C] uint8 at input size."""
        arr = np.array(self.to_pil(img), dtype=np.uint8)  # a writable copy
        return arr[:, :, None] if arr.ndim == 2 else arr

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, C] (or [H, W, C]) -> normalised float [N, C, H, W].

        Done per batch (after the DataLoader), which is much cheaper than per image and
        keeps the worker-to-main traffic in uint8.
        """
        if batch.ndim == 3:
            batch = batch.unsqueeze(0)
        x = batch.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return x.sub_(mean).div_(std)


#: interpolation name (timm's and Hugging Face's words) -> PIL resampling filter
RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
            "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}

#: name -> (resize shorter side, center crop); None means "the model's input size".
PROTOCOLS: dict[str, tuple[int | None, int | None]] = {
    "cifar": (None, None),      # resize shorter side to 32, center crop 32 (28x28 -> 32x32)
    "mnist": (None, None),      # 28x28, grayscale
    "imagenet": (256, 224),     # resize 256, center crop 224 (scaled for other input sizes)
    "direct": (None, None),     # resize shorter side to the input size, center crop
    "model": (None, None),      # the model's own config (timm, Hugging Face): its resize
}


def make_protocol(name: str, input_size: int, channels: int, mean: Sequence[float],
                  std: Sequence[float], resize: int | None = None,
                  crop: int | None = None, *, model_resize: int | None = None,
                  interpolation: str = "bilinear") -> Protocol:
    """A protocol by name, for a model with the given input size/channels/normalisation.

    ``model_resize`` is the model's own shorter side for its ``input_size`` (from its
    preprocessing config): used when ``resize`` is not given, scaled to another ``crop``.
    """
    if name not in PROTOCOLS:
        raise DataError(f"unknown preprocessing protocol {name!r}; choose one of "
                        f"{', '.join(PROTOCOLS)} (or give --resize/--crop).")
    if interpolation not in RESAMPLE:
        raise DataError(f"unknown interpolation {interpolation!r}; choose one of "
                        f"{', '.join(RESAMPLE)}.")
    d_resize, d_crop = PROTOCOLS[name]
    crop = crop or d_crop or input_size
    if resize is None and model_resize is not None:
        resize = model_resize if crop == input_size else round(crop * model_resize / input_size)
    if name == "imagenet" and resize is None:
        resize = round(crop * 256 / 224)
    resize = resize or d_resize or crop
    if resize < crop:
        raise DataError(f"resize ({resize}) must be >= crop ({crop}).")
    return Protocol(name, int(resize), int(crop), channels, tuple(mean), tuple(std),
                    interpolation)
