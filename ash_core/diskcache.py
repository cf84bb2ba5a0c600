"""The disk cache beside a bundle: where entries live, what names them, when one is trusted.

Score cubes, fitted states of scores on features, search results and layer sweeps are
cached by the same rules:

* **Directory** (``resolve_cache_dir``): ``cache_dir=`` when given, else ``ASH_CUBE_CACHE``,
  else ``<bundle>/.cube_cache`` when the bundle directory is writable (or that directory
  exists), else ``$XDG_CACHE_HOME/ash-explorer/cubes`` (default ``~/.cache``). A
  ``.cube_cache`` that is a symbolic link is never followed: nothing is cached, with a
  warning; so is a read-only bundle without a home directory.
* **Key**: a JSON-able dict of everything an entry depends on, with the bundle's content
  hash (``bundle``) and a digest of the bytes actually read (``data``, ``data_digest``:
  the head and the splits used), so a bundle loaded with ``verify=False`` whose features
  were edited never gets a stale entry. A stored key must equal the asked one exactly.
* **Slot** (``entry_path``): ``<dir>/<bundle content hash>/<prefix>-<slot digest><suffix>``,
  the slot digest being that of the key without ``data``: a stale entry is replaced in
  place, not left beside the new one.
* **Checks** (``read_entry``): an entry or its directory that is a symbolic link is not
  followed; a stale key, a bad whole-file checksum (``checksum``), a malformed or
  unreadable file: any failure to load gives one warning and the entry is rebuilt.
* **Writes** (``write_entry``): atomic (``bundle.atomic``: a temporary sibling renamed
  over the entry; a killed writer's temporary goes at the next write into the directory;
  a full disk gives one warning and the value is used uncached), with
  the permissions of the directory they are in (new directories take their parent's),
  never writable by others, so a cache beside a bundle is never more widely readable than
  the bundle; a directory that
  cannot be written gives one warning, and the value is used uncached.
* **Trust**: checksums detect corruption, not tampering. Whoever can write a bundle's
  caches can change its numbers, as whoever can write the bundle can; a forged entry
  whose arrays the score cannot use is refitted (``engine.fit``), one with other values
  of the right shapes is served as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ash_core.bundle import Bundle
from ash_core.bundle.atomic import atomic_write
from ash_core.bundle.safetensors_io import DTYPES, read_header, read_tensors, write_tensors
from ash_core.errors import BundleError, CubeCacheError

ENV_CACHE = "ASH_CUBE_CACHE"
#: the metadata field holding an entry's whole-file checksum
DIGEST_FIELD = "sha256"
#: warnings point at the caller of the cache's user (get_cube, search_many, ...)
STACKLEVEL = 5

T = TypeVar("T")

_DTYPE_NAME = {dt: name for name, dt in DTYPES.items() if name != "BF16"}
_digests: weakref.WeakKeyDictionary[Bundle, dict[str, str]] = weakref.WeakKeyDictionary()
_digest_lock = threading.Lock()


# --------------------------------------------------------------------------- where


def resolve_cache_dir(bundle: Bundle, cache_dir: str | os.PathLike | None = None,
                      what: str = "score cubes") -> tuple[Path | None, str | None]:
    """(cache directory, None), or (None, why ``what`` cannot be cached) (module doc)."""
    if cache_dir is not None:
        return Path(cache_dir), None
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]), None
    beside = Path(bundle.root) / ".cube_cache"
    if os.path.islink(beside):
        return None, (f"{beside} is a symbolic link, which is not followed; {what} are "
                      "not cached (remove the link, or set ASH_CUBE_CACHE)")
    if os.path.isdir(beside) or os.access(bundle.root, os.W_OK):
        return beside, None
    try:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    except (RuntimeError, KeyError):
        return None, ("the bundle directory is read-only and there is no home directory; "
                      f"{what} are not cached (set ASH_CUBE_CACHE to a writable directory)")
    return Path(base) / "ash-explorer" / "cubes", None


def cache_dir_of(bundle: Bundle, cache_dir: str | os.PathLike | None = None,
                 use_cache: bool = True, what: str = "score cubes") -> Path | None:
    """The cache directory to use, or None (``use_cache`` off, or none usable: then one
    warning saying why)."""
    if not use_cache:
        return None
    path, problem = resolve_cache_dir(bundle, cache_dir, what)
    if problem:
        warnings.warn(problem, stacklevel=STACKLEVEL - 1)
    return path


def slot_digest(key: Mapping[str, Any]) -> str:
    """The digest naming ``key``'s slot: of the key without its data digest."""
    slot = {k: v for k, v in key.items() if k != "data"}
    return hashlib.sha256(json.dumps(slot, sort_keys=True).encode()).hexdigest()[:16]


def entry_path(cache_dir: Path, key: Mapping[str, Any], prefix: str, suffix: str) -> Path:
    """``<cache_dir>/<bundle content hash>/<prefix>-<slot digest><suffix>``."""
    return Path(cache_dir) / key["bundle"] / f"{prefix}-{slot_digest(key)}{suffix}"


# --------------------------------------------------------------------------- what


def _bytes_of(arr: np.ndarray) -> memoryview | bytes:
    """The bytes of ``arr`` in C order, without a copy where it is contiguous (an empty
    array, which a memoryview cannot cast, gives no bytes)."""
    if arr.size == 0:
        return b""
    return memoryview(np.ascontiguousarray(arr)).cast("B")


def _array_digest(h: Any, arr: np.ndarray | None) -> None:
    if arr is None:
        h.update(b"none")
        return
    h.update(f"{arr.dtype.str}{list(arr.shape)}".encode())
    h.update(_bytes_of(arr))


def _part_digest(bundle: Bundle, part: str) -> str:
    """sha256 of the head (``part=""``) or of one split's features and labels, as read."""
    h = hashlib.sha256(part.encode() + b"\0")
    if part == "":
        _array_digest(h, bundle.head_weight.numpy())
        _array_digest(h, bundle.head_bias.numpy())
    else:
        split = bundle.split(part)
        _array_digest(h, split.features)
        _array_digest(h, split.labels)
        split.release_pages()  # read once: not resident next to the float32 copy
    return h.hexdigest()


def data_digest(bundle: Bundle, splits: Sequence[str]) -> str:
    """A digest of the head and ``splits`` as this Bundle object reads them (memoised per
    Bundle object: its arrays are read-only maps of files the loader checked once)."""
    with _digest_lock:
        memo = _digests.setdefault(bundle, {})
    parts = []
    for part in ["", *splits]:
        if part not in memo:
            memo[part] = _part_digest(bundle, part)
        parts.append(memo[part])
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def checksum(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> str:
    """sha256 of the canonical header without the checksum (the metadata minus
    ``DIGEST_FIELD``, every array's name, dtype and shape, as sorted JSON), then every
    array's bytes in name order: a changed dtype or shape, a renamed or swapped array, an
    edited key and any changed data byte all change it."""
    names = sorted(arrays)
    layout = {nm: [_DTYPE_NAME.get(arrays[nm].dtype, str(arrays[nm].dtype)),
                   list(arrays[nm].shape)] for nm in names}
    meta = {k: v for k, v in metadata.items() if k != DIGEST_FIELD}
    h = hashlib.sha256(json.dumps({"metadata": meta, "tensors": layout},
                                  sort_keys=True).encode())
    for nm in names:
        h.update(_bytes_of(arrays[nm]))
    return h.hexdigest()


def text_checksum(text: str) -> str:
    """sha256 of a text entry's body."""
    return hashlib.sha256(text.encode()).hexdigest()


def same_key(stored: Any, key: Mapping[str, Any]) -> bool:
    """Whether a stored key (as read back from JSON) is ``key`` exactly."""
    return stored == json.loads(json.dumps(key, sort_keys=True))


# --------------------------------------------------------------------------- array entries


def write_arrays(path: Path, arrays: Mapping[str, np.ndarray], key_field: str,
                 key: Mapping[str, Any]) -> Path:
    """Write ``arrays`` as safetensors with ``key`` (JSON, under ``key_field``) and their
    checksum in the metadata (atomic)."""
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    meta = {key_field: json.dumps(key, sort_keys=True)}
    meta[DIGEST_FIELD] = checksum(arrays, meta)
    return write_tensors(path, arrays, meta)


def read_arrays(path: Path, key_field: str, key: Mapping[str, Any],
                check: Callable[[dict[str, np.ndarray]], None] | None = None
                ) -> dict[str, np.ndarray]:
    """The arrays ``write_arrays`` wrote for ``key``; CubeCacheError when the entry is
    stale (another key), corrupt, or refused by ``check``."""
    try:
        _, meta = read_header(path)
        stored = json.loads(meta[key_field])
    except (BundleError, KeyError, TypeError, ValueError) as exc:
        raise CubeCacheError(f"{path} is corrupt ({exc})") from None
    if not same_key(stored, key):
        raise CubeCacheError(f"{path} is stale (made for a different key)")
    try:
        arrays = read_tensors(path, mmap=False)
    except BundleError as exc:
        raise CubeCacheError(f"{path} is corrupt ({exc})") from None
    if check is not None:
        check(arrays)
    if checksum(arrays, meta) != meta.get(DIGEST_FIELD):
        raise CubeCacheError(f"{path} is corrupt (checksum mismatch)")
    return arrays


# --------------------------------------------------------------------------- reading, writing


def check_not_linked(path: Path) -> None:
    """CubeCacheError when ``path`` or its directory is a symbolic link (never followed)."""
    for p in (path, path.parent):
        if os.path.islink(p):
            raise CubeCacheError(f"{p} is a symbolic link (not followed)")


def check_regular(path: Path) -> None:
    """CubeCacheError unless ``path`` is a regular file. Opened without blocking and
    without following a link, then fstat'ed: a FIFO (whose open would wait for a writer),
    a device or a directory is never read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise CubeCacheError(f"{path} cannot be opened ({exc.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
    finally:
        os.close(fd)
    if not stat.S_ISREG(mode):
        raise CubeCacheError(f"{path} is not a regular file (a FIFO, device or directory)")


def read_entry(path: Path | None, load: Callable[[Path], T], what: str) -> T | None:
    """``load(path)``, or None when there is no entry; any failure to load it (a link, a
    FIFO, device or directory, a stale key, a bad checksum, garbage) gives one warning:
    the entry is rebuilt."""
    if path is None or not os.path.lexists(path):
        return None
    try:
        check_not_linked(path)
        check_regular(path)
        return load(path)
    except Exception as exc:  # noqa: BLE001 - any broken entry is rebuilt and replaced
        warnings.warn(f"rebuilding the {what}: {exc}", stacklevel=STACKLEVEL)
        return None


#: what a cache entry and directory may grant at most: nobody but the owner writes (a
#: shared cache directory such as /tmp lends its wider bits to no entry)
_FILE_BITS, _DIR_BITS = 0o644, 0o755


def _make_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each with its parent's permissions:
    a cache beside a bundle is never readable by more people than the bundle is."""
    if directory.is_dir():
        return
    _make_dirs(directory.parent)
    with contextlib.suppress(FileExistsError):
        directory.mkdir()
        os.chmod(directory, stat.S_IMODE(os.stat(directory.parent).st_mode) & _DIR_BITS)


def write_entry(path: Path | None, write: Callable[[Path], Any], what: str) -> bool:
    """``write(path)`` (atomic) into a created, unlinked directory, with the permissions
    of its directory (the bundle's, beside a bundle) less execute bits; False, after one
    warning, when the cache directory cannot be used."""
    if path is None:
        return False
    try:
        _make_dirs(path.parent)
        if os.path.islink(path.parent):
            raise BundleError(f"{path.parent} is a symbolic link (not followed)")
        write(path)
        os.chmod(path, stat.S_IMODE(os.stat(path.parent).st_mode) & _FILE_BITS)
        return True
    except (OSError, BundleError) as exc:
        warnings.warn(f"could not cache the {what} in {path.parent} ({exc}); continuing "
                      "without the cache", stacklevel=STACKLEVEL)
        return False


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary sibling renamed over it."""
    return atomic_write(path, [text.encode("utf-8")])


def cached(path: Path | None, load: Callable[[Path], T], compute: Callable[[], T],
           write: Callable[[Path, T], Any], what: str) -> T:
    """The entry at ``path`` when it loads, else ``compute()``, written there."""
    value = read_entry(path, load, what)
    if value is None:
        value = compute()
        write_entry(path, lambda p: write(p, value), what)
    return value
