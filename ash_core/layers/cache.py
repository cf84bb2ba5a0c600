"""The layer sweep's disk cache: one file per (bundle, method, seed, layer, grid).

``<bundle>/.layer_cache/<key>.safetensors`` holds ``energy`` [P, N] F32 (the ID split, then
the OOD splits in bundle order), ``pred`` [P, N_id] I64 (shaped ID predictions), and the
unshaped ``base_energy`` [N] F32 and ``base_pred`` [N_id] I64. The key is the sha256 of the bundle's manifest (which
holds every file's sha256), the method, seed, layer, grid and the replay's version, so one
layer swept for the dashboard's layer control is reused by the "Where to ASH" view and the
CLI. A stale, corrupt or foreign file is recomputed and replaced, never trusted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ash_core.bundle import Bundle
from ash_core.bundle.safetensors_io import read_tensors, write_tensors
from ash_core.errors import AshError

CACHE_DIR = ".layer_cache"
#: bump when the replay's numbers change (2: batch norms folded into the tail's convolutions)
VERSION = 2
Arrays = dict[str, np.ndarray]


def cache_path(bundle: Bundle, method: str, layer: str, grid: Sequence[float],
               seed: int) -> Path:
    manifest = hashlib.sha256((bundle.root / "manifest.json").read_bytes()).hexdigest()
    text = json.dumps({"v": VERSION, "manifest": manifest, "method": method, "layer": layer,
                       "grid": [float(p) for p in grid], "seed": seed}, sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()[:32]
    return bundle.root / CACHE_DIR / f"{key}.safetensors"


def read_layer(path: Path, n_p: int, n_all: int, n_id: int) -> Arrays | None:
    """The arrays of one cached layer, or None when missing, corrupt or of other shapes."""
    want = {"energy": ((n_p, n_all), np.float32), "pred": ((n_p, n_id), np.int64),
            "base_energy": ((n_all,), np.float32), "base_pred": ((n_id,), np.int64)}
    try:
        arrays = read_tensors(path, mmap=False)
    except (AshError, OSError):
        return None
    ok = set(arrays) == set(want) and all(
        arrays[k].shape == shape and arrays[k].dtype == dtype for k, (shape, dtype) in
        want.items())
    return arrays if ok else None


def write_layer(path: Path, arrays: Arrays) -> None:
    try:
        path.parent.mkdir(exist_ok=True)
        write_tensors(path, arrays)
    except OSError:
        pass  # a read-only bundle: the sweep is still returned, just not cached
