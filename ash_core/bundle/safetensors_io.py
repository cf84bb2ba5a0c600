"""The one place where ash_core reads and writes safetensors files.

Every check on untrusted bytes lives here, so the bundle loader, the score-cube cache
and extraction chunks all refuse the same bad files with the same clear messages.

API (stable; additions only)::

    read_header(path) -> (tensors, metadata)
        tensors:  dict name -> TensorInfo(dtype, shape, start, end), in file order
                  (``dtype`` the safetensors name, e.g. "F32"; ``start``/``end`` ABSOLUTE
                  byte offsets in the file, so ``end - start == nbytes``)
        metadata: dict[str, str] from ``__metadata__`` ({} when absent)
    read_tensors(path, mmap=True, expect=None) -> dict[str, np.ndarray]
        arrays in file order; memory-mapped read-only when ``mmap`` (BF16 is converted
        to a float32 copy, never reinterpreted). ``expect`` maps every allowed tensor name
        to its allowed dtype names (e.g. ``{"features": {"F16", "F32"}}``): any other
        name or dtype is an error; missing names are the caller's business.
    write_tensors(path, arrays, metadata=None) -> Path
        one writer: little-endian, 8-byte padded header, data laid out by descending
        itemsize (stable, so every tensor is aligned to its itemsize), readable by
        ``safetensors.numpy.load_file``; written to a temporary sibling, fsync'd and
        renamed, so ``path`` is complete or unchanged.
    DTYPES: safetensors dtype name -> numpy dtype (the whitelist)
    release_pages(array)
        drops the pages of the file map under ``array`` from this process's resident
        memory (read again from the page cache on next use); a no-op for other arrays

Checks made by ``read_header`` before any tensor byte is read (so a file sparse-extended
to 64 GiB fails in milliseconds, before anyone hashes it): pickle / ``torch.save`` magic
refused; header length in (0, MAX_HEADER_BYTES] and inside the file; UTF-8 JSON object
nested at most MAX_JSON_DEPTH deep; dtypes from the whitelist; shapes lists of
non-negative ints; data offsets contiguous from 0, each tensor's byte size equal to
prod(shape) * itemsize; the data section covers the file exactly (truncation and
trailing bytes caught). Every failure is a ``BundleError`` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ash_core.bundle.atomic import atomic_write, fsync_dir  # noqa: F401 - fsync_dir re-exported
from ash_core.errors import BundleError

MAX_HEADER_BYTES = 16 << 20
MAX_JSON_DEPTH = 64
MAX_NDIM = 16

#: the whitelist; BF16 is stored as raw uint16 bits and converted to float32 on read
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
}
_NAME_OF = {dt: name for name, dt in DTYPES.items() if name != "BF16"}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors header; ``start``/``end`` are absolute file offsets."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def looks_pickled(head: bytes) -> bool:
    """Pickle protocol 2-5 (b"\\x80" + protocol byte) or a torch.save zip archive."""
    return (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or \
        head[:4] == b"PK\x03\x04"


def pickle_refusal(path: Path, what: str = "safetensors") -> BundleError:
    """The error for a pickle/torch.save file offered where ``what`` was expected."""
    return BundleError(
        f"{path} is a pickle/torch.save file, not {what}. ASH Explorer never unpickles "
        "files (that can run arbitrary code); re-export the tensors with safetensors "
        "(`ash-explore extract` writes bundles in the right format)."
    )


def json_depth_ok(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``value`` (parsed JSON) nests lists/objects at most ``limit`` deep."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children)
    return True


class _DuplicateKey(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are unique: with a repeated key, which value counts would
    depend on the reader (the last one wins in Python, the first in others)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dupe = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _DuplicateKey(f"the key {dupe[:100]!r} appears more than once in one object")
    return out


def parse_json(blob: bytes, where: str, limit: int = MAX_JSON_DEPTH) -> Any:
    """UTF-8 JSON with bounded nesting and unique keys, or BundleError ("not valid JSON",
    never RecursionError)."""
    try:
        value = json.loads(blob.decode("utf-8"), object_pairs_hook=_unique_pairs)
    except _DuplicateKey as exc:
        raise BundleError(f"{where}: {exc}; refusing the ambiguous JSON.") from None
    except RecursionError:
        value = None
        deep = True
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{where}: not valid JSON ({exc}).") from None
    else:
        deep = not json_depth_ok(value, limit)
    if deep:
        raise BundleError(
            f"{where}: JSON nested deeper than {limit} levels (corrupt or hostile)."
        )
    return value


# --------------------------------------------------------------------------- reading


def _corrupt(path: Path, what: str) -> BundleError:
    return BundleError(f"{path}: {what}; the file is corrupt or tampered with; re-create it.")


def _header_bytes(path: Path) -> tuple[bytes, int]:
    """The raw JSON header and the file size, after the length and magic checks."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
        if head[8:9] != b"{" and looks_pickled(head):
            raise pickle_refusal(path)
        if len(head) < 9:
            raise BundleError(f"{path} is truncated ({size} bytes); re-create it.")
        (header_len,) = struct.unpack("<Q", head[:8])
        if header_len <= 0 or header_len > MAX_HEADER_BYTES or 8 + header_len > size:
            raise BundleError(
                f"{path} is not a valid safetensors file (header length {header_len} does "
                f"not fit in {size} bytes, limit {MAX_HEADER_BYTES}): it is truncated or not "
                "safetensors; re-create it."
            )
        fh.seek(8)
        return fh.read(header_len), size


def _shape(value: Any) -> tuple[int, ...] | None:
    if not isinstance(value, list) or len(value) > MAX_NDIM:
        return None
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value):
        return None
    return tuple(value)


def _entry(path: Path, name: str, info: Any) -> tuple[str, tuple[int, ...], int, int]:
    """(dtype, shape, begin, end) of one header entry, offsets relative to the data."""
    ok = isinstance(info, dict) and set(info) == {"dtype", "shape", "data_offsets"}
    dtype = info.get("dtype") if ok else None
    shape = _shape(info.get("shape")) if ok else None
    offsets = info.get("data_offsets") if ok else None
    if (dtype not in DTYPES or shape is None or not isinstance(offsets, list)
            or len(offsets) != 2 or not all(type(v) is int and v >= 0 for v in offsets)):
        raise _corrupt(path, f"tensor {name!r} has an unsupported or corrupt entry "
                             f"{str(info)[:200]} (dtypes: {', '.join(DTYPES)})")
    return dtype, shape, offsets[0], offsets[1]


def _metadata(path: Path, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _corrupt(path, "__metadata__ must map strings to strings")
    return dict(value)


def read_header(path: str | os.PathLike) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse and fully validate a safetensors header against the file's size.

    Reads only the header: nothing of the data section is touched, so this is cheap
    however large (or sparse) the file is.
    """
    path = Path(path)
    blob, size = _header_bytes(path)
    header = parse_json(blob, f"{path}: corrupt safetensors header")
    if not isinstance(header, dict):
        raise _corrupt(path, "corrupt safetensors header (not a JSON object)")
    metadata = _metadata(path, header.pop("__metadata__", None))
    data_start = 8 + len(blob)
    entries = sorted((*_entry(path, name, info)[2:], name) for name, info in header.items())
    tensors: dict[str, TensorInfo] = {}
    covered = 0
    for begin, end, name in entries:
        dtype, shape, _, _ = _entry(path, name, header[name])
        expected = math.prod(shape) * DTYPES[dtype].itemsize
        if begin != covered or end - begin != expected:
            raise _corrupt(path, f"tensor {name!r} does not match its declared size or "
                                 "does not follow the previous tensor")
        covered = end
        tensors[name] = TensorInfo(dtype, shape, data_start + begin, data_start + end)
    data_len = size - data_start
    if covered > data_len:
        raise BundleError(f"{path} is truncated: its header describes {covered} data bytes, "
                          f"the file holds {data_len}; re-create it.")
    if covered < data_len:
        raise _corrupt(path, f"{data_len - covered} bytes after the last tensor (appended "
                             "or concatenated data)")
    return tensors, metadata


def _check_expected(path: Path, tensors: Mapping[str, TensorInfo],
                    expect: Mapping[str, Iterable[str]]) -> None:
    for name, info in tensors.items():
        if name not in expect:
            raise BundleError(
                f"{path} holds a tensor named {name!r}; expected only "
                f"{', '.join(map(repr, expect))}. The file is not what it claims to be; "
                "re-create it."
            )
        allowed = set(expect[name])
        if info.dtype not in allowed:
            raise BundleError(
                f"{path}: tensor {name!r} is stored as {info.dtype}; allowed: "
                f"{', '.join(sorted(allowed))}. Re-create the file with a supported dtype."
            )


def _array(path: Path, info: TensorInfo, mmap: bool) -> np.ndarray:
    dtype = DTYPES[info.dtype]
    if info.nbytes == 0:
        arr = np.zeros(info.shape, dtype=dtype)
    elif mmap:
        arr = np.memmap(path, dtype=dtype, mode="r", offset=info.start, shape=info.shape)
    else:
        with open(path, "rb") as fh:
            fh.seek(info.start)
            data = fh.read(info.nbytes)
        if len(data) != info.nbytes:
            raise BundleError(f"{path} shrank while being read; re-create it.")
        arr = np.frombuffer(data, dtype=dtype).reshape(info.shape)
    if info.dtype == "BF16":  # bf16 is the upper half of a float32: widen the bits
        arr = (np.asarray(arr, dtype=np.uint32) << 16).view(np.float32)
    return arr


def release_pages(arr: np.ndarray | None) -> None:
    """Unmap the resident pages of the read-only file map under ``arr`` (``MADV_DONTNEED``).

    A memory-mapped split that was read once (decoded to float32, hashed, counted) would
    otherwise stay resident in this process: 350 MB of float16 features at ImageNet
    scale, counted in its RSS next to the float32 copy. The map stays valid: the next
    read faults the pages back in from the page cache or the file, with the same bytes.
    A no-op for arrays not backed by a map, or where ``madvise`` is unavailable.
    """
    base = arr
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    with contextlib.suppress(OSError, ValueError):  # closed, or refused: nothing to undo
        base.madvise(mmap.MADV_DONTNEED)


def read_tensors(path: str | os.PathLike, mmap: bool = True,
                 expect: Mapping[str, Iterable[str]] | None = None) -> dict[str, np.ndarray]:
    """Every tensor of a validated safetensors file (read-only memory maps by default)."""
    path = Path(path)
    tensors, _ = read_header(path)
    if expect is not None:
        _check_expected(path, tensors, expect)
    try:
        return {name: _array(path, info, mmap) for name, info in tensors.items()}
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read {path} ({exc}).") from None


# --------------------------------------------------------------------------- writing


def _header_blob(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None) -> bytes:
    header: dict[str, Any] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise BundleError("safetensors metadata must map strings to strings.")
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, arr in arrays.items():
        header[name] = {"dtype": _NAME_OF[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    return blob + b" " * (-len(blob) % 8)


def _storable(name: Any, arr: Any) -> np.ndarray:
    if not isinstance(name, str) or not name or name == "__metadata__":
        raise BundleError(f"tensor name {name!r} is not allowed in a safetensors file.")
    arr = np.asarray(arr)
    dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    if dtype not in _NAME_OF:
        raise BundleError(f"tensor {name!r} has dtype {arr.dtype}, which safetensors_io does "
                          f"not write; use one of {', '.join(str(d) for d in _NAME_OF)}.")
    return arr.astype(dtype, order="C", copy=False)  # (ascontiguousarray makes 0-d 1-d)


def write_tensors(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                  metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``arrays`` atomically and durably; returns ``path``."""
    path = Path(path)
    arrays = {name: _storable(name, arr) for name, arr in arrays.items()}
    arrays = dict(sorted(arrays.items(), key=lambda kv: -kv[1].dtype.itemsize))
    blob = _header_blob(arrays, metadata)
    parts = [struct.pack("<Q", len(blob)), blob,
             *(memoryview(arr).cast("B") for arr in arrays.values() if arr.nbytes)]
    return atomic_write(path, parts)
