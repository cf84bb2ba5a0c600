"""Atomic file writes, and the removal of the temporary files a killed writer leaves.

Every file the project writes outside a temporary directory (cache entries, bundle files,
a rehashed manifest) goes through ``atomic_write``: the bytes go to a temporary sibling
``.NAME.PID-RANDOM.tmp``, which is flushed, fsynced and renamed over ``NAME``. A reader
therefore sees the old file, the new one or none, never a half-written one, whatever
stops the writer (a full disk, SIGKILL, power loss).

A writer that fails cleanly (an exception, a full disk) removes its temporary file. One
that is killed cannot, so each ``atomic_write`` first removes the temporary files in its
directory whose writing process is gone (the PID in the name; a live process's file is
kept). A kill's leftover therefore goes at the next write into that directory, which a
rerun of the killed command always makes.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ash_core import faults

#: the temporary files ``atomic_write`` creates: ``.NAME.PID-RANDOM.tmp``
TEMP_NAME = re.compile(r"\..+\.(\d+)-[A-Za-z0-9_]+\.tmp")


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(directory: Path, name: str | None = None) -> list[Path]:
    """Remove the temporary files of dead writers in ``directory`` (regular files named as
    ``atomic_write`` names them, never a link or a directory; with ``name``, only those of
    that file); returns what was removed."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for entry in names:
        m = TEMP_NAME.fullmatch(entry)
        if not m or (name is not None and not entry.startswith(f".{name}.")) \
                or pid_alive(int(m.group(1))):
            continue
        path = Path(directory) / entry
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(path).st_mode):
                path.unlink()
                removed.append(path)
    return removed


def _write_bytes(fh, data: bytes | memoryview) -> None:
    """The one low-level write of every atomic file (tests make it fail as a full disk)."""
    fh.write(data)


def atomic_write(path: str | os.PathLike, parts: Iterable[bytes | memoryview]) -> Path:
    """Write the concatenation of ``parts`` to ``path`` atomically and durably.

    On any failure (a full disk: OSError ENOSPC) the temporary file is removed and the
    error propagates; ``path`` is left as it was.
    """
    path = Path(path)
    clean_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp",
                               dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            for part in parts:
                _write_bytes(fh, part)
            fh.flush()
            os.fsync(fh.fileno())
        faults.checkpoint("atomic_write.filled")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (best effort where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
