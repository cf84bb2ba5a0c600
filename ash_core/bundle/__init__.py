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

from ash_core.lazy import lazy_names

#: public name -> its module, imported on first use (PEP 562): importing one
#: submodule (``ash_core.bundle.files``, say) does not import the writer and the
#: model, which import torch.
_LAZY = {
    "SplitArrays": "ash_core.bundle.create",
    "create_bundle": "ash_core.bundle.create",
    "inside": "ash_core.bundle.files",
    "is_bundle_dir": "ash_core.bundle.files",
    "sha256_file": "ash_core.bundle.files",
    "load_bundle": "ash_core.bundle.load",
    "FEATURE_DTYPES": "ash_core.bundle.manifest",
    "FORMAT": "ash_core.bundle.manifest",
    "ID_ROLES": "ash_core.bundle.manifest",
    "MANIFEST": "ash_core.bundle.manifest",
    "ROLES": "ash_core.bundle.manifest",
    "VERSION": "ash_core.bundle.manifest",
    "check_groups": "ash_core.bundle.manifest",
    "check_labels": "ash_core.bundle.manifest",
    "check_manifest": "ash_core.bundle.manifest",
    "check_split_name": "ash_core.bundle.manifest",
    "check_split_roles": "ash_core.bundle.manifest",
    "Bundle": "ash_core.bundle.model",
    "Split": "ash_core.bundle.model",
    "SplitInfo": "ash_core.bundle.model",
    "negative_fraction": "ash_core.bundle.model",
    "SplitData": "ash_core.bundle.write",
    "write_bundle": "ash_core.bundle.write",
}


__getattr__, __dir__ = lazy_names(globals(), _LAZY)


__all__ = [
    "FEATURE_DTYPES", "FORMAT", "ID_ROLES", "MANIFEST", "ROLES", "VERSION", "Bundle", "Split",
    "SplitData", "SplitInfo", "check_groups", "check_labels", "check_manifest", "check_split_name",
    "check_split_roles", "create_bundle", "SplitArrays", "inside", "is_bundle_dir", "load_bundle", "negative_fraction",
    "sha256_file", "write_bundle",
]
