"""The cube cache: what a cached cube is keyed on, and get_cube / get_cubes through it.

``<cache dir>/<bundle content hash>/<method>-<mode>-<slot digest>.safetensors`` (the
directory, slot, checks and writes are the disk cache's: ``ash_core.diskcache``). The key
holds everything a cube depends on, including a digest of the bytes actually read (the
head and every split the cube uses, id_fit for global thresholds or ReAct's clip). ANY
failure to load an entry (stale key, bad checksum, wrong dtype or shape, garbage,
unreadable) gives one warning, a rebuild and a rewrite of the entry.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ash_core.bundle import Bundle
from ash_core.cube.build import Progress, build_cubes, check_request
from ash_core.cube.model import ScoreCube, fits_on_id_fit
from ash_core.cube.store import load_cube, save_cube
from ash_core.cube.thresholds import normalize_grid
from ash_core.diskcache import cache_dir_of, data_digest, entry_path, read_entry, write_entry
from ash_core.engine.store import Selection
from ash_core.maths.draws import SCHEME as DRAW_SCHEME
from ash_core.methods import check_seed

#: Bumped whenever the cube's content or file layout changes (old entries become stale).
CUBE_VERSION = 4  # 4: ReAct clips units >= c, ties of rows clipped everywhere exact


def cube_key(sel: Selection, method: str, threshold_mode: str, grid: np.ndarray,
             seed: int) -> dict[str, Any]:
    """Everything a cached cube depends on (compared exactly when loading)."""
    names = sel.split_names
    fit = sel.bundle.id_fit
    fits = fits_on_id_fit(method, threshold_mode) and fit is not None
    used = names + ([fit.name] if fits else [])
    return {
        "cube_version": CUBE_VERSION,
        "bundle": sel.bundle.content_hash,
        "data": data_digest(sel.bundle, used),
        "method": method,
        "threshold": threshold_mode,
        "grid": [float(v) for v in grid],
        "seed": int(seed) if method == "ash-rand" else 0,
        **({"draws": DRAW_SCHEME} if method == "ash-rand" else {}),
        "splits": list(names),
        "rows": {nm: len(sel.bundle.split(nm)) for nm in names},
        "labels": sel.bundle.id_split.labels is not None,
    }


def cube_path(cache_dir: Path, key: dict[str, Any]) -> Path:
    """The slot of ``key``: ``<cache_dir>/<bundle hash>/<method>-<mode>-<digest>``."""
    return entry_path(cache_dir, key, f"{key['method']}-{key['threshold']}", ".safetensors")


def _save(cube: ScoreCube, path: Path, key: dict[str, Any]) -> None:
    cube.meta["path"] = str(save_cube(cube, path, key))


def get_cubes(
    source: Bundle | Selection,
    methods: Sequence[str],
    grid: Iterable[float],
    threshold_mode: str = "local",
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    backend: str = "auto",
    progress: Progress | None = None,
) -> dict[str, ScoreCube]:
    """Cubes of several ASH methods: loaded from the cache, or built together and cached."""
    sel = source if isinstance(source, Selection) else Selection(source)
    seed = check_seed(seed)
    methods = check_request(sel, methods, threshold_mode)
    g = normalize_grid(grid)
    cdir = cache_dir_of(sel.bundle, cache_dir, use_cache, "score cubes")
    keys = {m: cube_key(sel, m, threshold_mode, g, seed) for m in methods} if cdir else {}
    out = {m: read_entry(cube_path(cdir, keys[m]), functools.partial(load_cube, key=keys[m]),
                         "score cube") for m in keys}
    missing = [m for m in methods if out.get(m) is None]
    if missing:
        built = build_cubes(sel, missing, g, threshold_mode, seed, backend, progress)
        for m, cube in built.items():
            if cdir is not None and not write_entry(
                    cube_path(cdir, keys[m]),
                    functools.partial(_save, cube, key=keys[m]), "score cube"):
                cdir = None  # one warning per call, not one per method
            out[m] = cube
    return {m: out[m].freeze() for m in methods}


def get_cube(source: Bundle | Selection, method: str, grid: Iterable[float],
             threshold_mode: str = "local", seed: int = 0, **options: Any) -> ScoreCube:
    """The cube of one method over ``grid`` (cached; see the module doc). ``options``: the
    other arguments of ``get_cubes`` (cache_dir, use_cache, backend, progress)."""
    return get_cubes(source, [method], grid, threshold_mode, seed, **options)[method]
