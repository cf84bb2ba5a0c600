"""The feature-bundle format: read (memory-mapped, never pickle) and write (atomic).

A bundle is a directory::

    manifest.json                 format, version, classes, provenance, splits, file hashes
    head.safetensors              weight [C, D] float32, bias [C] float32
    splits/<name>.safetensors     features [N, D] (fp16/fp32), labels [N] int64 (optional)
    splits/<name>.csv             sidecar: sample_id, label, source (one row per sample)
    thumbs/<name>.safetensors     optional: images [N, H, W(, 3)] uint8 (redistributable sets)

Modules, one job each: ``manifest`` (the schema and the split/label rules), ``files``
(confined paths, bounded reads, hashes), ``model`` (``Bundle``, ``Split``), ``load``
(``load_bundle``), ``write`` (``write_bundle``), ``publish`` (atomic rename, recovery of a
killed writer's leftovers), ``safetensors_io`` (every safetensors byte read or written).
The full specification: docs/bundle-format.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ash_core.bundle.create import SplitArrays, create_bundle
from ash_core.bundle.files import inside, is_bundle_dir, sha256_file
from ash_core.bundle.load import load_bundle
from ash_core.bundle.manifest import (
    FEATURE_DTYPES,
    FORMAT,
    ID_ROLES,
    MANIFEST,
    ROLES,
    VERSION,
    check_labels,
    check_manifest,
    check_split_name,
    check_split_roles,
)
from ash_core.bundle.model import Bundle, Split, SplitInfo, negative_fraction
from ash_core.bundle.safetensors_io import read_tensors
from ash_core.bundle.write import SplitData, write_bundle


def read_safetensors(path: Path, mmap: bool = True) -> dict[str, np.ndarray]:
    """Compatibility name for ``ash_core.bundle.safetensors_io.read_tensors`` (strictly validated)."""
    return read_tensors(path, mmap=mmap)


__all__ = [
    "FEATURE_DTYPES", "FORMAT", "ID_ROLES", "MANIFEST", "ROLES", "VERSION", "Bundle", "Split",
    "SplitData", "SplitInfo", "check_labels", "check_manifest", "check_split_name",
    "check_split_roles", "create_bundle", "SplitArrays", "inside", "is_bundle_dir", "load_bundle", "negative_fraction",
    "read_safetensors", "sha256_file", "write_bundle",
]
