"""``load_bundle``: open a bundle directory, checking everything before trusting it."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ash_core.bundle.files import check_sidecar, inside, open_tensors, read_manifest
from ash_core.bundle.manifest import (
    HEAD_TENSORS,
    MANIFEST,
    SPLIT_TENSORS,
    VARIANT_TENSORS,
    check_labels,
    referenced_files,
)
from ash_core.bundle.model import Bundle, Split, SplitInfo
from ash_core.bundle.publish import restore_interrupted
from ash_core.bundle.safetensors_io import looks_pickled
from ash_core.errors import BundleError

_KNOWN_SPLIT_KEYS = {"name", "role", "file", "n", "meta", "thumbnails", "variants"}


def load_bundle(path: str | os.PathLike, verify: bool = True, *,
                manifest_file: str | os.PathLike | None = None) -> Bundle:
    """Open a bundle directory (memory-mapped; nothing is unpickled).

    ``verify`` checks every file against the sha256 recorded in the manifest (which
    detects tampering); a manifest that lacks the sha256 of a file it names is refused.
    ``verify=False`` skips hashing and, where hashes are missing, warns naming those
    files. Shapes, dtypes, sizes and label ranges are always checked. ``manifest_file``
    reads that manifest instead of the bundle's own (``bundle rehash`` checks its new
    manifest this way before it replaces the old one).
    """
    root = _bundle_dir(Path(path))
    try:
        manifest = read_manifest(root, None if manifest_file is None else Path(manifest_file))
        hashes = _expected_hashes(root, manifest, verify)
        head = _load_head(root, manifest, hashes)
        dim = int(head["weight"].shape[1])
        splits = [_load_split(root, entry, manifest, hashes, dim)
                  for entry in manifest["splits"]]
    except OSError as exc:  # unreadable file, permissions, a directory where a file belongs
        raise BundleError(f"cannot read bundle {root} ({exc}).") from None
    return Bundle(root, manifest, head, splits)


def _bundle_dir(root: Path) -> Path:
    """``root`` if it is a directory (restoring an interrupted overwrite first)."""
    restore_interrupted(root)
    if not root.exists():
        raise BundleError(f"bundle {root} does not exist; pass a bundle directory.")
    if root.is_file():
        with open(root, "rb") as fh:
            magic = fh.read(9)
        if looks_pickled(magic):
            raise BundleError(
                f"{root} is a pickle/torch.save file, not an ASH bundle. ASH Explorer never "
                "unpickles files (that can run arbitrary code). Create a bundle directory with "
                "`ash-explore extract` or `ash_core.write_bundle`."
            )
    if not root.is_dir():
        raise BundleError(f"{root} is a file; a bundle is a directory containing {MANIFEST}.")
    return root


def _expected_hashes(root: Path, manifest: dict[str, Any], verify: bool) -> dict[str, str]:
    """The sha256 to check per relative path ({} without ``verify``)."""
    referenced = referenced_files(manifest)
    for rel in referenced:  # every path confined to the bundle before anything is read
        inside(root, rel)
    seen: dict[str, str] = {}
    for rel in referenced:  # one file, one role: a variant is never its split's own features
        norm = os.path.normpath(rel)
        if norm in seen:
            raise BundleError(
                f"bundle {root}: the manifest names {rel!r} twice (also as {seen[norm]!r}); "
                "every file of a bundle holds one thing (a variant's features are a file of "
                "their own). Rebuild the bundle (`ash-explore extract` or `ash-explore bundle "
                "create`).")
        seen[norm] = rel
    files = manifest.get("files", {})
    missing = [rel for rel in referenced if rel not in files]
    if missing and verify:
        raise BundleError(
            f"bundle {root}: the manifest records no sha256 for {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}, so it cannot be verified. Record them with `ash-explore "
            f"bundle rehash {root}`, or skip verification (verify=False, --no-verify)."
        )
    if missing:
        warnings.warn(
            f"bundle {root}: loaded without verification; no sha256 recorded for "
            f"{', '.join(missing)}.", stacklevel=3,
        )
    return dict(files) if verify else {}


def _load_head(root: Path, manifest: dict[str, Any], hashes: dict[str, str]) -> dict:
    rel = manifest["head"]["file"]
    head = open_tensors(root, rel, hashes.get(rel), HEAD_TENSORS)
    for key in ("weight", "bias"):
        if key not in head:
            raise BundleError(f"bundle {root}: head file lacks the tensor {key!r}.")
    weight, bias = head["weight"], head["bias"]
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise BundleError(
            f"bundle {root}: head weight must be [C, D] and bias [C]; got {weight.shape} "
            f"and {bias.shape}."
        )
    if 0 in weight.shape:
        raise BundleError(
            f"bundle {root}: the head is [C, D] = {list(weight.shape)}; a head needs at least "
            "one class and one feature. Rebuild the bundle from the model's classifier "
            "(`ash-explore extract` or `ash-explore bundle create`)."
        )
    if len(manifest["classes"]) != weight.shape[0]:
        raise BundleError(
            f"bundle {root}: {len(manifest['classes'])} class names but the head has "
            f"{weight.shape[0]} outputs."
        )
    for key, actual in (("num_classes", weight.shape[0]), ("feature_dim", weight.shape[1])):
        if key in manifest and manifest[key] != actual:
            raise BundleError(
                f"bundle {root}: manifest {key} = {manifest[key]} but the head says {actual}."
            )
    return head


def _split_info(entry: dict[str, Any]) -> SplitInfo:
    return SplitInfo(
        name=entry["name"], role=entry["role"], file=entry["file"], n=entry["n"],
        meta=entry.get("meta"), thumbnails=entry.get("thumbnails"),
        variants=dict(entry.get("variants", {})),
        extra={k: v for k, v in entry.items() if k not in _KNOWN_SPLIT_KEYS},
    )


def _load_split(root: Path, entry: dict[str, Any], manifest: dict[str, Any],
                hashes: dict[str, str], dim: int) -> Split:
    info = _split_info(entry)
    if info.meta:
        check_sidecar(root, info.meta, hashes.get(info.meta), info.n)
    arrays = open_tensors(root, info.file, hashes.get(info.file), SPLIT_TENSORS)
    _check_split_arrays(root, info, arrays, manifest, dim)
    variants = {}
    for variant, rel in info.variants.items():
        tensors = open_tensors(root, rel, hashes.get(rel), VARIANT_TENSORS)
        _check_features(root, f"{info.name!r} (variant {variant!r})", tensors.get("features"),
                        info.n, manifest, dim)
        variants[variant] = tensors["features"]
    return Split(info, root, arrays, hashes.get(info.thumbnails) if info.thumbnails else None,
                 variants)


def _check_features(root: Path, what: str, feats: np.ndarray | None, n: int,
                    manifest: dict[str, Any], dim: int) -> None:
    """Features of split ``what`` (or of one of its variants) are [n, dim] in the
    manifest's feature_dtype; BundleError otherwise."""
    if feats is None or feats.ndim != 2:
        raise BundleError(
            f"bundle {root}: split {what} must hold 'features' of shape [N, D]."
        )
    if feats.dtype != np.dtype(manifest["feature_dtype"]):
        raise BundleError(
            f"bundle {root}: split {what} stores features as {feats.dtype} but the "
            f"manifest says feature_dtype {manifest['feature_dtype']!r}; the file was "
            "replaced or the manifest edited. Rebuild the bundle (`ash-explore bundle create`)."
        )
    if feats.shape[1] != dim:
        raise BundleError(
            f"bundle {root}: split {what} has feature dimension {feats.shape[1]} but "
            f"the head expects {dim}; the features and head come from different models or "
            "layers. Rebuild the bundle (`ash-explore extract` or `ash-explore bundle create`)."
        )
    if feats.shape[0] != n:
        raise BundleError(
            f"bundle {root}: split {what} declares n={n} but holds "
            f"{feats.shape[0]} samples."
        )


def _check_split_arrays(root: Path, info: SplitInfo, arrays: dict[str, np.ndarray],
                        manifest: dict[str, Any], dim: int) -> None:
    _check_features(root, repr(info.name), arrays.get("features"), info.n, manifest, dim)
    try:
        check_labels(info.name, info.role, arrays.get("labels"), info.n, len(manifest["classes"]))
    except BundleError as exc:
        raise BundleError(f"bundle {root}: {exc}") from None
