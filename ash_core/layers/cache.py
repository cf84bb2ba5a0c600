"""The layer sweep's disk cache: one entry per (bundle, method, seed, layer, grid).

``<cache dir>/<bundle content hash>/layer-<layer>-<method>-<slot digest>.safetensors`` (the
disk cache's rules: ``ash_core.diskcache``) holds ``energy`` [P, N] F32 (the ID split, then
the OOD splits in bundle order), ``pred`` [P, N_id] I64 (shaped ID predictions), and the
unshaped ``base_energy`` [N] F32 and ``base_pred`` [N_id] I64, with the key and a whole-file
sha256 in its metadata. The key holds the bundle's content hash (its manifest, with every
file's sha256), at the penultimate layer a digest of the features read, the method, seed,
layer, grid and the replay's version, so one layer swept for the dashboard's layer control
is reused by the "Where to ASH" view and the CLI. A stale, corrupt or foreign entry is
recomputed and replaced (with a warning), never trusted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ash_core.bundle import Bundle
from ash_core.diskcache import data_digest, entry_path, read_arrays, write_arrays
from ash_core.errors import CubeCacheError
from ash_core.layers.store import PENULTIMATE
from ash_core.maths.draws import SCHEME as DRAW_SCHEME
from ash_core.methods import get_method

#: bump when the replay's numbers or the entry's layout change (2: batch norms folded into
#: the tail's convolutions; 3: entries keyed and checked as every disk-cache entry; 4: conv
#: tails computed in the channels-last layout)
VERSION = 4
KEY_FIELD = "ash_layer_sweep"
Arrays = dict[str, np.ndarray]


def layer_key(bundle: Bundle, method: str, layer: str, grid: Sequence[float], seed: int,
              splits: Sequence[str]) -> dict[str, Any]:
    """Everything a layer's sweep depends on (compared exactly when loading)."""
    return {
        "version": VERSION,
        "bundle": bundle.content_hash,
        **({"data": data_digest(bundle, splits)} if layer == PENULTIMATE else {}),
        "method": method,
        "layer": layer,
        "grid": [float(p) for p in grid],
        "seed": seed,
        **({"draws": DRAW_SCHEME} if get_method(method).stochastic else {}),
        "splits": list(splits),
    }


def layer_path(cache_dir: Path, key: Mapping[str, Any]) -> Path:
    """``<cache_dir>/<bundle hash>/layer-<layer>-<method>-<slot digest>.safetensors``."""
    return entry_path(cache_dir, key, f"layer-{key['layer']}-{key['method']}",
                      ".safetensors")


def save_layer(path: Path, key: Mapping[str, Any], arrays: Arrays) -> Path:
    """Write one layer's arrays with their key and a sha256 over header and data (atomic)."""
    return write_arrays(path, arrays, KEY_FIELD, key)


def load_layer(path: Path, key: Mapping[str, Any], n_p: int, n_all: int, n_id: int
               ) -> Arrays:
    """The arrays of one cached layer; CubeCacheError when stale, corrupt or of other
    shapes."""
    want = {"energy": ((n_p, n_all), np.float32), "pred": ((n_p, n_id), np.int64),
            "base_energy": ((n_all,), np.float32), "base_pred": ((n_id,), np.int64)}

    def check(arrays: Arrays) -> None:
        if set(arrays) != set(want) or any(arrays[k].shape != shape or arrays[k].dtype != dt
                                           for k, (shape, dt) in want.items()):
            raise CubeCacheError(f"{path} holds arrays of other names or shapes")

    return read_arrays(path, KEY_FIELD, key, check)
