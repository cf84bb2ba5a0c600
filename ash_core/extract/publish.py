"""The output directory: what may be replaced, and the kill-safe swap that publishes a bundle.

``--overwrite`` replaces only what is recognisably an ASH bundle (a ``manifest.json`` with
``"format": "ash-bundle"``) or an empty directory; anything else is refused before any work
and again at the swap, and nothing is deleted. The swap renames the old bundle to a tombstone,
renames the new one into place and deletes the tombstone: a kill at any moment leaves the old
bundle, the new bundle, or no bundle plus a complete new one in the work directory (the next
run publishes it) -- never a mixture.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ash_core.bundle import FORMAT, MANIFEST
from ash_core.errors import ExtractError
from ash_core.extract.leftovers import sibling
from ash_core.faults import checkpoint


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of the bundle at ``path``, or None when ``path`` is not recognisably one."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    return manifest


def bundle_recipe(path: Path) -> str | None:
    """The recipe fingerprint recorded in the bundle at ``path`` (None: no bundle, or none)."""
    manifest = read_manifest(path) if path.is_dir() and not path.is_symlink() else None
    extraction = (manifest or {}).get("extraction")
    return extraction.get("recipe_sha256") if isinstance(extraction, dict) else None


def check_target(out: Path, overwrite: bool) -> None:
    """Raise ExtractError unless ``out`` is absent or (with ``overwrite``) replaceable."""
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise ExtractError(f"{out} already exists; pass --overwrite to replace it (only an ASH "
                           "bundle or an empty directory is ever replaced).")
    if out.is_symlink() or not out.is_dir():
        raise ExtractError(f"{out} exists and is not a directory (a file or a symbolic link); "
                           "--overwrite replaces only ASH bundles: nothing was deleted. Move it "
                           "away or choose another -o.")
    if any(out.iterdir()) and read_manifest(out) is None:
        raise ExtractError(f"{out} is not an ASH bundle (no manifest.json with \"format\": "
                           f"\"{FORMAT}\"), so --overwrite does not replace it: nothing was "
                           "deleted. Move it away or choose another -o.")


def publish(new: Path, out: Path, overwrite: bool) -> None:
    """Move the finished bundle ``new`` to ``out``, swapping out a replaceable old one."""
    if not (out.exists() or out.is_symlink()):
        os.replace(new, out)
        checkpoint("extract.published")
        return
    check_target(out, overwrite)
    old = sibling(out, "old")
    os.replace(out, old)
    checkpoint("extract.swap")
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old, out)  # put the previous bundle back
        raise
    checkpoint("extract.published")
    shutil.rmtree(old)  # already a tombstone: a kill here leaves only .NAME.old-PID
