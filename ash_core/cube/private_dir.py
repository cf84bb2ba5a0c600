"""Directories and files only the current user controls (for code we load and caches we trust).

A native library is loaded with ``dlopen``: whoever can write its directory or file can
run code as us. So a directory is trusted only when ``lstat`` (never following a
symlink) shows a real directory owned by the effective uid and not writable by group or
others; a file likewise. The checks run on every load, not only at creation.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def _why_untrusted(path: Path, want_dir: bool) -> str | None:
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot lstat {path} ({exc.strerror or exc})"
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link"
    if want_dir and not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if not want_dir and not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if st.st_uid != os.geteuid():
        return f"{path} is owned by uid {st.st_uid}, not by us (uid {os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def why_untrusted_dir(path: Path) -> str | None:
    """None when ``path`` is a private directory of ours, else the reason it is not."""
    return _why_untrusted(Path(path), want_dir=True)


def why_untrusted_file(path: Path) -> str | None:
    """None when ``path`` is a regular file of ours nobody else can write, else why not."""
    return _why_untrusted(Path(path), want_dir=False)


class UntrustedPath(OSError):
    """A directory or file fails the ownership / permission checks."""


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed and check it; ``UntrustedPath`` if it fails."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    why = why_untrusted_dir(path)
    if why:
        raise UntrustedPath(why)
    return path
