"""The cube cache policy: what a cached cube is keyed on, where it lives, when it is rebuilt.

``<cache dir>/<bundle content hash>/<method>-<mode>-<slot digest>.safetensors``. The
cache dir is ``<bundle>/.cube_cache`` when the bundle directory is writable (or that
directory exists), else ``$XDG_CACHE_HOME/ash-explorer/cubes`` (default ``~/.cache``);
``ASH_CUBE_CACHE`` or ``cache_dir=`` override both. A ``.cube_cache`` (or a per-bundle
directory) that is a symbolic link is never followed: cubes are then not cached, with a
warning. When no cache directory can be used at all (a read-only bundle and no writable
home), cubes are computed without caching, with one warning.

The key holds everything a cube depends on, including a sha256 of the bytes actually
read (the head and every split the cube uses, id_fit for global thresholds), so a
bundle loaded with ``verify=False`` whose features were edited never gets a stale cube.
The file name (the *slot*) is a digest of the key without that data digest, so a stale
or broken entry is replaced in place. ANY failure to load an entry (stale key, bad
checksum, wrong dtype or shape, garbage, unreadable) gives one warning, a rebuild and
a rewrite of the entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ash_core.bundle import Bundle
from ash_core.cube.build import Progress, build_cubes, check_request
from ash_core.cube.model import ScoreCube, fits_on_id_fit
from ash_core.cube.store import load_cube, save_cube
from ash_core.cube.thresholds import normalize_grid
from ash_core.diskcache import data_digest, resolve_cache_dir
from ash_core.engine.store import Selection
from ash_core.errors import BundleError
from ash_core.methods import check_seed

#: Bumped whenever the cube's content or file layout changes (old entries become stale).
CUBE_VERSION = 4  # 4: ReAct clips units >= c, ties of rows clipped everywhere exact

def cube_key(sel: Selection, method: str, threshold: str, grid: np.ndarray,
             seed: int) -> dict[str, Any]:
    """Everything a cached cube depends on (compared exactly when loading)."""
    names = sel.split_names
    fit = sel.bundle.id_fit
    used = names + ([fit.name] if fits_on_id_fit(method, threshold) and fit is not None else [])
    return {
        "cube_version": CUBE_VERSION,
        "bundle": sel.bundle.content_hash,
        "data": data_digest(sel.bundle, used),
        "method": method,
        "threshold": threshold,
        "grid": [float(v) for v in grid],
        "seed": int(seed) if method == "ash-rand" else 0,
        "splits": list(names),
        "rows": {nm: len(sel.bundle.split(nm)) for nm in names},
        "labels": sel.bundle.id_split.labels is not None,
    }


def cube_path(cache_dir: Path, key: dict[str, Any]) -> Path:
    """The slot of ``key``: ``<cache_dir>/<bundle hash>/<method>-<mode>-<digest>``; the data
    digest is left out so that a stale entry is overwritten, not left beside the new one."""
    slot = {k: v for k, v in key.items() if k != "data"}
    digest = hashlib.sha256(json.dumps(slot, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / key["bundle"] / \
        f"{key['method']}-{key['threshold']}-{digest}.safetensors"


def default_cache_dir(bundle: Bundle) -> Path | None:
    """Where ``get_cube`` caches this bundle's cubes by default (None: not cached)."""
    return resolve_cache_dir(bundle)[0]


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=4)


def _load_cached(path: Path, key: dict[str, Any]) -> ScoreCube | None:
    """The cached cube, or None when absent; any failure to load warns once (rebuilt)."""
    if not os.path.lexists(path):
        return None
    try:
        if os.path.islink(path.parent):
            raise BundleError(f"{path.parent} is a symbolic link (not followed)")
        return load_cube(path, key)
    except Exception as exc:  # noqa: BLE001 - any broken entry is rebuilt and replaced
        _warn(f"rebuilding the score cube: {exc}")
        return None


def _store(cube: ScoreCube, path: Path, key: dict[str, Any]) -> bool:
    """Cache ``cube`` at ``path``; False (after one warning) when the cache is unusable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if os.path.islink(path.parent):
            raise BundleError(f"{path.parent} is a symbolic link (not followed)")
        cube.meta["path"] = str(save_cube(cube, path, key))
        return True
    except (OSError, BundleError) as exc:
        _warn(f"could not cache the score cube in {path.parent} ({exc}); continuing without "
              "the cache")
        return False


def get_cubes(
    source: Bundle | Selection,
    methods: Sequence[str],
    grid: Iterable[float],
    threshold: str = "local",
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    backend: str = "auto",
    progress: Progress | None = None,
) -> dict[str, ScoreCube]:
    """Cubes of several ASH methods: loaded from the cache, or built together and cached."""
    sel = source if isinstance(source, Selection) else Selection(source)
    seed = check_seed(seed)
    methods = check_request(sel, methods, threshold)
    g = normalize_grid(grid)
    cdir, problem = resolve_cache_dir(sel.bundle, cache_dir) if use_cache else (None, None)
    if problem:
        _warn(problem)
    keys = {m: cube_key(sel, m, threshold, g, seed) for m in methods} if cdir else {}
    out = {m: _load_cached(cube_path(cdir, keys[m]), keys[m]) for m in keys}
    missing = [m for m in methods if out.get(m) is None]
    if missing:
        for m, cube in build_cubes(sel, missing, g, threshold, seed, backend, progress).items():
            if cdir is not None and not _store(cube, cube_path(cdir, keys[m]), keys[m]):
                cdir = None  # one warning per call, not one per method
            out[m] = cube
    return {m: out[m].freeze() for m in methods}


def get_cube(source: Bundle | Selection, method: str, grid: Iterable[float],
             threshold: str = "local", seed: int = 0, **options: Any) -> ScoreCube:
    """The cube of one method over ``grid`` (cached; see the module doc). ``options``: the
    other arguments of ``get_cubes`` (cache_dir, use_cache, backend, progress)."""
    return get_cubes(source, [method], grid, threshold, seed, **options)[method]
