"""Kill-safe removal, and the temporary names extraction (and the bundle writer) leave beside
a bundle ``NAME``, with the rule for cleaning them up.

A directory is removed by renaming it to a *tombstone* first and deleting that: a kill during
the deletion leaves a tombstone (a name nothing reads), never a half-deleted directory under
its real name. Temporary siblings of ``NAME``:

* ``.NAME.partial.new-PID``  a work directory being created (renamed to ``NAME.partial`` once
  its marker is written);
* ``.NAME.partial.dead-PID`` a work directory being deleted (tombstone);
* ``.NAME.old-PID``          a replaced bundle being deleted (tombstone of the overwrite swap);
* ``.NAME.tmp-*``            a bundle being written by ``write_bundle``.

The first two are only ever created by extraction and are always removed by the next run; the
last two are removed only when everything in them is a bundle entry
(``bundle.manifest.BUNDLE_ENTRIES``, and ``.cube_cache/``), so nothing else is deleted.
Two extractions into the same NAME at the same time are not supported.
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

from ash_core.bundle.manifest import BUNDLE_ENTRIES
from ash_core.faults import checkpoint

#: a bundle's entries, and the cache beside them
LEFTOVER_ENTRIES = BUNDLE_ENTRIES | {".cube_cache"}


def sibling(out: Path, kind: str) -> Path:
    """The temporary sibling ``.NAME.<kind>-PID`` of ``out`` (kind: partial.new, partial.dead,
    old)."""
    return out.with_name(f".{out.name}.{kind}-{os.getpid()}")


def remove_tree(path: Path, tombstone: Path) -> None:
    """Delete directory ``path``: rename it to ``tombstone``, then delete that."""
    os.replace(path, tombstone)
    checkpoint("extract.tombstone")
    shutil.rmtree(tombstone)


def _only_bundle_files(path: Path) -> bool:
    return all(p.name in LEFTOVER_ENTRIES for p in path.iterdir())


def _is_leftover(path: Path, out_name: str) -> bool:
    if not path.is_dir() or path.is_symlink():
        return False
    kind = path.name[len(out_name) + 2:]
    if kind.startswith(("partial.new-", "partial.dead-")):
        return True
    return kind.startswith(("old-", "tmp-")) and _only_bundle_files(path)


def clean_leftovers(out: Path) -> list[Path]:
    """Remove the temporary siblings of ``out`` left by killed runs; returns what was removed."""
    if not out.parent.is_dir():
        return []
    found = sorted(out.parent.glob(f".{glob.escape(out.name)}.*"))
    removed = [p for p in found if _is_leftover(p, out.name)]
    for p in removed:
        shutil.rmtree(p)
    return removed
