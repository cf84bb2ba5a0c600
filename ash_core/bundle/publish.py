"""Publishing a written bundle atomically, and recovering what a killed writer left.

``write_bundle`` writes into ``.<name>.tmp-<pid>-<random>/`` beside the target and renames
it into place. Overwriting swaps: target -> ``.<name>.old-<pid>-<random>``, temp -> target,
then the old copy is deleted. A kill (SIGKILL, power loss) can leave:

* a stale temp directory: deleted by the next ``write_bundle`` to that path, when its
  writer's pid is gone and it holds nothing but what the writer puts there;
* a lone old copy with the target absent (killed between the two renames): renamed back,
  with a warning, by the next ``write_bundle`` or ``load_bundle`` of that path;
* an old copy beside a published bundle (killed before the delete): deleted by the next
  ``write_bundle``.

Crash points for kill tests (``ash_core.faults``; ``.`` not ``:`` in the tags, because
``ASH_FAULT_AT=tag:N`` splits at the first colon): ``write_bundle.split_written`` (after
each split's files), ``write_bundle.files_written`` (temp directory complete),
``write_bundle.old_moved`` (old bundle moved aside, new one not yet in place),
``write_bundle.published`` (new bundle in place, old copy not yet deleted).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import warnings
from pathlib import Path

from ash_core import faults
from ash_core.bundle.atomic import pid_alive
from ash_core.bundle.files import is_bundle_dir
from ash_core.bundle.manifest import BUNDLE_ENTRIES, MANIFEST
from ash_core.bundle.safetensors_io import fsync_dir
from ash_core.errors import BundleError

#: what a writer's temp directory may hold (plus write_tensors' own ``.*.tmp`` files)
_TMP_ENTRIES = BUNDLE_ENTRIES


def new_tmp_dir(path: Path) -> Path:
    """A fresh temp directory beside ``path``, named so a later run can tell it is ours."""
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))


def _leftovers(path: Path, kind: str) -> list[Path]:
    """``kind`` ("tmp" or "old") siblings of ``path`` whose writing process is gone
    (``write_bundle`` names them ``.NAME.old-PID-RANDOM``, extraction ``.NAME.old-PID``)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.{kind}-(\d+)(?:-[A-Za-z0-9_]+)?")
    found = []
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return []
    for p in siblings:
        m = pattern.fullmatch(p.name)
        if m and not p.is_symlink() and p.is_dir() and not pid_alive(int(m.group(1))):
            found.append(p)
    return sorted(found)


def _looks_like_our_tmp(tmp: Path) -> bool:
    return all(e.name in _TMP_ENTRIES or (e.name.startswith(".") and e.name.endswith(".tmp"))
               for e in tmp.iterdir())


def restore_interrupted(path: Path) -> None:
    """Rename a lone old copy back to ``path`` when a swap was killed half-way."""
    if path.exists() or path.is_symlink():
        return
    olds = [p for p in _leftovers(path, "old") if is_bundle_dir(p)]
    if len(olds) > 1:
        raise BundleError(
            f"{path} is missing and {len(olds)} interrupted overwrites left copies "
            f"({', '.join(p.name for p in olds)}); move the one you want to {path}."
        )
    if olds:
        os.replace(olds[0], path)
        fsync_dir(path.parent)
        warnings.warn(
            f"{path}: a previous write_bundle was killed while replacing this bundle; "
            f"restored the previous version from {olds[0].name}.",
            stacklevel=3,
        )


def clean_leftovers(path: Path) -> None:
    """Restore an interrupted swap, then delete stale temp and old copies of ``path``."""
    restore_interrupted(path)
    for tmp in _leftovers(path, "tmp"):
        if _looks_like_our_tmp(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    if path.exists():
        for old in _leftovers(path, "old"):
            if is_bundle_dir(old):
                shutil.rmtree(old, ignore_errors=True)


def check_replaceable(path: Path, overwrite: bool) -> None:
    """BundleError unless ``path`` is absent, or an ASH bundle and ``overwrite`` is set."""
    if not (path.exists() or path.is_symlink()):
        return
    if not overwrite:
        raise BundleError(
            f"{path} already exists; choose another path or pass overwrite=True (--overwrite)."
        )
    if not is_bundle_dir(path):
        raise BundleError(
            f"{path} exists and is not an ASH bundle (no {MANIFEST} with \"format\": "
            "\"ash-bundle\"); refusing to overwrite it. Choose another path or remove it "
            "yourself."
        )


def _fsync_tree(root: Path) -> None:
    for sub in (root / "splits", root / "thumbs", root):
        if sub.is_dir():
            fsync_dir(sub)


def publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename the complete ``tmp`` to ``path``; an existing bundle is swapped, never mixed."""
    _fsync_tree(tmp)
    faults.checkpoint("write_bundle.files_written")
    check_replaceable(path, overwrite)
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
        os.replace(path, old)
        faults.checkpoint("write_bundle.old_moved")
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(old, path)  # put the previous bundle back
            raise
        fsync_dir(path.parent)
        faults.checkpoint("write_bundle.published")
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
        fsync_dir(path.parent)
        faults.checkpoint("write_bundle.published")
