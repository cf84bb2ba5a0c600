"""The cube cache file: one safetensors file per cube, checksummed as a whole.

Layout: the tensors of ``tensor_layout(key)`` (every one's dtype and shape follow from
the key; nothing else is accepted) and a ``__metadata__`` holding the JSON key, the
split names, the backend and ``sha256``. Reading and writing go through
``ash_core.bundle.safetensors_io`` (strict header checks, atomic writes).

Checksum (``diskcache.checksum``): sha256 over the canonical header without the checksum
(the metadata minus ``sha256``, and every tensor's name, dtype and shape, as sorted JSON)
followed by every tensor's bytes in name order. So a changed dtype or shape, a renamed or
swapped tensor, an edited key and any changed data byte all fail the check; byte offsets are
not hashed
because the strict header check already requires them to tile the data exactly, and
the per-name data order catches swapped offsets. The digest lives in the header itself
(the file stays plain safetensors, no sidecar to lose).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ash_core.bundle.safetensors_io import DTYPES, read_header, read_tensors, write_tensors
from ash_core.cube.model import FIELD_DTYPES, FIELDS, ScoreCube, SplitCube, fits_on_id_fit
from ash_core.diskcache import DIGEST_FIELD, check_not_linked, checksum, same_key
from ash_core.errors import BundleError, CubeCacheError

_DTYPE_NAME = {dt: name for name, dt in DTYPES.items() if name != "BF16"}


def tensor_layout(key: dict[str, Any]) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """Every tensor a cube file of ``key`` holds, with its dtype and shape."""
    p = len(key["grid"])
    out: dict[str, tuple[np.dtype, tuple[int, ...]]] = {"grid": (np.dtype(np.float64), (p,))}
    for nm in key["splits"]:
        n = int(key["rows"][nm])
        for f, dt in FIELD_DTYPES.items():
            out[f"{nm}/{f}"] = (dt, (p, n))
            out[f"{nm}/unshaped_{f}"] = (dt, (1, n))
    if key["labels"]:
        out["labels"] = (np.dtype(np.int64), (int(key["rows"][key["splits"][0]]),))
    if fits_on_id_fit(key["method"], key["threshold"]):
        out["thresholds"] = (np.dtype(np.float64), (p,))
    return out


def _tensors(cube: ScoreCube) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {"grid": cube.grid}
    for nm, sc in cube.splits.items():
        for f in FIELDS:
            out[f"{nm}/{f}"] = getattr(sc, f)
    for nm, sc in cube.unshaped.items():
        for f in FIELDS:
            out[f"{nm}/unshaped_{f}"] = getattr(sc, f)
    if cube.labels is not None:
        out["labels"] = cube.labels
    if cube.cutoffs is not None:
        out["thresholds"] = cube.cutoffs
    return out


def _metadata(cube: ScoreCube, key: dict[str, Any]) -> dict[str, str]:
    return {
        "ash_cube": json.dumps(key, sort_keys=True),
        "id_name": cube.id_name,
        "ood_names": json.dumps(cube.ood_names),
        "bundle_name": cube.bundle_name,
        "backend": cube.backend,
    }


def save_cube(cube: ScoreCube, path: Path, key: dict[str, Any]) -> Path:
    """Write a cube (whole-file sha256 in its metadata), atomically via safetensors_io."""
    tensors = _tensors(cube)
    meta = _metadata(cube, key)
    meta[DIGEST_FIELD] = checksum(tensors, meta)
    return write_tensors(path, tensors, meta)


def _check_metadata(meta: Any, key: dict[str, Any]) -> dict[str, Any]:
    """The stored key must equal ``key``, the split names its splits; else CubeCacheError."""
    if not isinstance(meta, dict):
        raise CubeCacheError("it has no cube metadata")
    try:
        stored = json.loads(meta["ash_cube"])
        ood_names = json.loads(meta["ood_names"])
        id_name = meta["id_name"]
    except (KeyError, TypeError, ValueError) as exc:
        raise CubeCacheError(f"its metadata is corrupt ({exc})") from None
    if not same_key(stored, key):
        raise CubeCacheError("it is stale (built for a different key)")
    if [id_name, *ood_names] != list(key["splits"]):
        raise CubeCacheError("its split names do not match its key")
    return {"id_name": id_name, "ood_names": ood_names,
            "bundle_name": str(meta.get("bundle_name", "")),
            "backend": str(meta.get("backend", "native"))}


def _check_layout(arrays: dict[str, np.ndarray], key: dict[str, Any]) -> None:
    want = tensor_layout(key)
    if set(arrays) != set(want):
        raise CubeCacheError("its tensors are not the ones its key implies")
    for name, (dtype, shape) in want.items():
        arr = arrays[name]
        if arr.dtype != dtype or arr.shape != shape:
            raise CubeCacheError(
                f"tensor {name!r} is {arr.dtype}{list(arr.shape)}, expected {dtype}{list(shape)}"
            )
    if not np.array_equal(arrays["grid"], np.asarray(key["grid"], dtype=np.float64)):
        raise CubeCacheError("its grid does not match its key")


def _assemble(arrays: dict[str, np.ndarray], key: dict[str, Any], info: dict[str, Any],
              path: Path) -> ScoreCube:
    def split(nm: str, prefix: str = "") -> SplitCube:
        return SplitCube(*(arrays[f"{nm}/{prefix}{f}"] for f in FIELDS))

    names = list(key["splits"])
    return ScoreCube(
        method=key["method"], threshold_mode=key["threshold"], grid=np.asarray(arrays["grid"]),
        seed=key["seed"], bundle_hash=key["bundle"], bundle_name=info["bundle_name"],
        id_name=info["id_name"], ood_names=info["ood_names"],
        splits={nm: split(nm) for nm in names},
        unshaped={nm: split(nm, "unshaped_") for nm in names},
        labels=arrays.get("labels"), cutoffs=arrays.get("thresholds"),
        backend=info["backend"], meta={"path": str(path), "cached": True},
    )


def load_cube(path: Path, key: dict[str, Any], verify: bool = True) -> ScoreCube:
    """Load a cached cube; ``CubeCacheError`` when it is stale, corrupt or malformed.

    Checks, in order: not a symbolic link (nor its directory); the header (strictly, by
    safetensors_io); stored
    key == ``key``; every tensor's name, dtype and shape as the key implies; the sha256
    of header and data (``verify``).
    """
    path = Path(path)
    check_not_linked(path)
    try:
        _, meta = read_header(path)
        info = _check_metadata(meta, key)
        expect = {nm: {_DTYPE_NAME[dt]} for nm, (dt, _) in tensor_layout(key).items()}
        arrays = read_tensors(path, mmap=True, expect=expect)
        _check_layout(arrays, key)
        if verify and checksum(arrays, meta) != meta.get(DIGEST_FIELD):
            raise CubeCacheError("it is corrupt (checksum mismatch)")
    except CubeCacheError as exc:
        raise CubeCacheError(f"{path}: {exc}") from None
    except BundleError as exc:
        raise CubeCacheError(f"{path} is corrupt ({exc})") from None
    return _assemble(arrays, key, info, path)
