"""A sample's picture: its bundled thumbnail, or its source file under the data root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ash_core import Bundle
from ash_core.errors import AshError


@dataclass(frozen=True)
class SampleImage:
    kind: str  # "thumbnail", "file" or "missing"
    image: np.ndarray | None = None
    path: str | None = None
    message: str = ""
    source: str = ""


def _source(bundle: Bundle, split: str, index: int) -> str:
    """The sample's image path relative to the data root ("" when the sidecar has none)."""
    meta = bundle.split(split).meta
    if "source" in meta.columns and index < len(meta):
        return str(meta["source"].iloc[index] or "")
    return ""


def sample_image(bundle: Bundle, split: str, index: int, data_root: str | None) -> SampleImage:
    """The sample's picture: its bundled thumbnail, its file under the data root, or why not."""
    try:
        thumbs = bundle.split(split).thumbnails
    except AshError as exc:
        return SampleImage("missing", message=f"thumbnails unreadable: {exc}")
    if thumbs is not None and 0 <= index < thumbs.shape[0]:
        return SampleImage("thumbnail", image=np.asarray(thumbs[index]))
    try:
        source = _source(bundle, split, index)
    except Exception as exc:  # noqa: BLE001 - a broken sidecar must not break the inspector
        return SampleImage("missing", message=f"sidecar unreadable: {exc}")
    if not source:
        return SampleImage("missing", message="no thumbnail and no image path in this bundle")
    if not data_root:
        return SampleImage("missing", source=source,
                           message=f"image {source} not shown: no data root given "
                                   "(start with --data-root DIR)")
    root = Path(data_root)
    if not root.is_dir():
        return SampleImage("missing", source=source,
                           message=f"data root {data_root} does not exist; image {source} "
                                   "cannot be shown")
    full = (root / source).resolve()
    if not full.is_relative_to(root.resolve()) or not full.is_file():
        return SampleImage("missing", source=source,
                           message=f"image {source} not found under the data root {data_root}")
    return SampleImage("file", path=str(full), source=source)
