"""File access inside a bundle: confined paths, bounded reads, hashes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ash_core.bundle.manifest import FORMAT, MANIFEST, MAX_MANIFEST_BYTES, check_manifest, short
from ash_core.bundle.safetensors_io import parse_json, read_header, read_tensors
from ash_core.errors import BundleError


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def inside(root: Path, rel: Any) -> Path:
    """Resolve a manifest path and refuse anything that escapes the bundle directory."""
    if not isinstance(rel, str) or not rel:
        raise BundleError(f"manifest path {short(rel)} is not a non-empty relative path.")
    if os.path.isabs(rel) or rel.startswith(("/", "\\")):
        raise BundleError(
            f"manifest path {rel[:200]!r} is absolute; bundle paths must be relative to the "
            "bundle directory."
        )
    try:
        resolved = (root / rel).resolve()
        base = root.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # symlink loop, NUL byte, ...
        raise BundleError(
            f"bundle {root}: manifest path {rel[:200]!r} cannot be resolved ({exc}); a "
            "symlink loop or an invalid name. Rebuild the bundle (`ash-explore bundle create`)."
        ) from None
    if not resolved.is_relative_to(base):
        raise BundleError(
            f"manifest path {rel[:200]!r} escapes the bundle directory {root}; refusing to "
            "read it. Bundle files must live inside the bundle directory."
        )
    return resolved


def existing_file(root: Path, rel: Any, what: str = "file") -> Path:
    """``inside(root, rel)`` that must be a regular file."""
    full = inside(root, rel)
    if not full.is_file():
        raise BundleError(f"bundle {root}: {what} {rel!r} named in the manifest is missing.")
    return full


def read_bounded(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of ``path`` (BundleError if it holds more)."""
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise BundleError(
            f"{path} is larger than {limit >> 20} MiB; a manifest is a few KiB. It is "
            "corrupt or not an ASH bundle."
        )
    return data


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` and fsync it (callers rename it into place)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def read_manifest(root: Path, path: Path | None = None) -> dict[str, Any]:
    """The parsed and schema-checked manifest of the bundle at ``root`` (read from
    ``path`` instead of ``root/manifest.json`` when given: a candidate manifest)."""
    if path is None:
        path = root / MANIFEST
        if path.is_symlink():  # the split files' rule: nothing named is read from outside
            inside(root, MANIFEST)
    if not path.is_file():
        raise BundleError(
            f"{root} has no {MANIFEST}; it is not an ASH bundle (or was not written "
            "completely). Rebuild it with `ash-explore bundle create` or `ash-explore extract`."
        )
    manifest = parse_json(read_bounded(path, MAX_MANIFEST_BYTES), f"{path}: corrupt manifest")
    check_manifest(manifest, path)
    return manifest


def is_bundle_dir(path: Path) -> bool:
    """True when ``path`` is a directory whose manifest says ``"format": "ash-bundle"``."""
    try:
        if path.is_symlink() or not path.is_dir():
            return False
        manifest = parse_json(read_bounded(path / MANIFEST, MAX_MANIFEST_BYTES), str(path))
    except (OSError, BundleError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


def check_sha256(root: Path, rel: str, full: Path, sha256: str | None) -> None:
    """BundleError unless ``full`` hashes to ``sha256`` (None: not checked)."""
    if sha256 is not None and sha256_file(full) != sha256:
        raise BundleError(
            f"bundle {root}: {rel} does not match the sha256 in the manifest: it was "
            "modified or corrupted after writing. If you edited it on purpose, run "
            f"`ash-explore bundle rehash {root}`; otherwise rebuild the bundle "
            "(`ash-explore bundle create`)."
        )


def open_tensors(root: Path, rel: Any, sha256: str | None,
                 expect: Mapping[str, Iterable[str]]) -> dict[str, np.ndarray]:
    """A bundle's safetensors file: confined, size-checked against its header, THEN hashed
    (so a huge or sparse file fails at once instead of being hashed), then mapped."""
    full = existing_file(root, rel)
    read_header(full)
    check_sha256(root, rel, full, sha256)
    return read_tensors(full, expect=expect)


#: a sidecar row is a sample id, a label and a relative path: far below this
SIDECAR_BYTES_PER_ROW = 4096


def check_sidecar(root: Path, rel: Any, sha256: str | None, n: int) -> Path:
    """A split's CSV sidecar: confined, of plausible size for ``n`` rows, then hashed."""
    full = existing_file(root, rel, "sidecar")
    size = full.stat().st_size
    if size > (n + 1) * SIDECAR_BYTES_PER_ROW:
        raise BundleError(
            f"bundle {root}: sidecar {rel!r} is {size} bytes for {n} samples (more than "
            f"{SIDECAR_BYTES_PER_ROW} bytes a row); it is corrupt. Rebuild the bundle "
            "(`ash-explore bundle create` or `ash-explore extract`)."
        )
    check_sha256(root, rel, full, sha256)
    return full
