"""``rehash_bundle``: record new sha256 digests after a deliberate edit of a bundle's files.

The new manifest is written beside the old one as a temp file (fsynced), the bundle is
loaded with verification against it (every format rule the loader checks), and only
then is it renamed over ``manifest.json``; a refusal leaves the old manifest untouched.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ash_core.bundle.atomic import clean_stale_temps
from ash_core.bundle.files import (
    existing_file,
    is_bundle_dir,
    read_manifest,
    sha256_file,
    write_text,
)
from ash_core.bundle.load import load_bundle
from ash_core.bundle.manifest import MANIFEST, referenced_files
from ash_core.bundle.safetensors_io import fsync_dir
from ash_core.errors import BundleError


def rehash_bundle(path: str | os.PathLike) -> tuple[dict[str, tuple[str | None, str]], int]:
    """Recompute the sha256 of every file the manifest names and write the manifest
    atomically. Returns ({file: (old digest or None, new digest)} for what changed,
    the number of files unchanged)."""
    root = Path(path)
    if not is_bundle_dir(root):
        raise BundleError(f"{root} is not an ASH bundle (no {MANIFEST} with \"format\": "
                          "\"ash-bundle\"); give a bundle directory.")
    manifest = read_manifest(root)
    old = dict(manifest.get("files", {}))
    new = {rel: sha256_file(existing_file(root, rel)) for rel in referenced_files(manifest)}
    changed = {rel: (old.get(rel), digest) for rel, digest in new.items()
               if old.get(rel) != digest}
    manifest["files"] = {**old, **new}
    clean_stale_temps(root, MANIFEST)  # a killed rehash's (named as atomic_write names it)
    fd, name = tempfile.mkstemp(prefix=f".{MANIFEST}.{os.getpid()}-", suffix=".tmp", dir=root)
    os.close(fd)
    tmp = Path(name)
    try:
        write_text(tmp, json.dumps(manifest, indent=2) + "\n")
        load_bundle(root, verify=True, manifest_file=tmp)
        if changed:
            os.replace(tmp, root / MANIFEST)
            fsync_dir(root)
    finally:
        tmp.unlink(missing_ok=True)
    return changed, len(new) - len(changed)
