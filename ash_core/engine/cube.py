"""Score cubes: every grid p of an ASH variant at once, cached beside the bundle.

A ``ScoreCube`` holds, for one (method, threshold mode, p grid, seed) and every split
of a bundle, the energy / MSP / max-logit scores and the argmax predictions at every
grid p, as ``[P, N]`` arrays, plus the unshaped scores. A slider move is then a
lookup plus metrics (``point_metrics``), not a pass over the features.

How it is built (``build_cubes``): each row is sorted once (stable, descending);
the survivors of every p, local or global thresholds, are a prefix of that order.
The shaped logits of ASH-P are running sums of value x weight column along the
order, ASH-S the same times exp(s1/s2(k)), ASH-B running sums of the weight columns
times s1/k, ASH-RAND running sums of draw x weight column. The native kernel
(``kernel.c``) does all variants in one pass over the order, tile by tile of classes,
and reduces the logits of each p to scores on the fly; a pure-torch engine (band
sparse products, slower) is the fallback where no C compiler is available.

Cache (``get_cube``): ``<bundle>/.cube_cache/<content hash>/<method>-<mode>-<key>.safetensors``
(or ``~/.cache/ash-explorer/cubes/...`` when the bundle is read-only). The
safetensors ``__metadata__`` holds the JSON key (engine version, bundle content
hash, method, threshold mode, grid, seed, splits) and a sha256 of the tensor data;
a cube whose key differs (stale) or whose checksum or layout fails (corrupt,
truncated) is rebuilt. Files are written to a temporary file and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bundle import Bundle, read_safetensors
from ..errors import BundleError, CubeCacheError, FeatureError, ParameterError
from ..evaluate import Evaluator
from ..metrics import IdScores, average_metrics, check_convention
from ..registry import check_seed, check_threshold_mode, get_method
from ..scores import energy_score, get_score, list_scores, maxlogit_score
from ..shaping import check_percentile, kept_count
from . import kernel as _kernel

ENGINE_VERSION = 2
#: ASH variants the cube engine computes, with their kernel slot.
CUBE_METHODS: dict[str, int] = {"ash-p": 0, "ash-s": 1, "ash-b": 2, "ash-rand": 3}
#: Stored per split and grid point. ``gap`` = logsumexp - max logit, so that
#: MSP = exp(-gap) keeps float64 resolution near 1 (as ``scores.msp_score``).
FIELDS: tuple[str, ...] = ("energy", "gap", "maxlogit", "pred")
RAND_LOW, RAND_HIGH = 0.0, 10.0
#: Rows per native block (draws for ASH-RAND are made block by block) and per torch chunk.
BLOCK_ROWS = 4096
TORCH_CHUNK = 1024

Progress = Callable[[int, int], None]


def is_cube_method(method: str) -> bool:
    """Whether ``method`` is computed by the cube engine (the ASH family)."""
    return method in CUBE_METHODS


@dataclass
class SplitCube:
    """Scores of one split at every grid point: float32 arrays ``[P, N]``, pred int32.

    ``gap`` is logsumexp - max logit; ``msp`` (= exp(-gap), float64) is derived from it.
    """

    energy: np.ndarray
    gap: np.ndarray
    maxlogit: np.ndarray
    pred: np.ndarray

    @property
    def msp(self) -> np.ndarray:
        """Maximum softmax probability ``[P, N]`` (float64, like ``scores.msp_score``)."""
        return np.exp(-np.asarray(self.gap, dtype=np.float64))

    def score(self, name: str, j: int | None = None) -> np.ndarray:
        """Scores ``[P, N]``, or ``[N]`` at grid row ``j``."""
        if name not in ("energy", "msp", "maxlogit"):
            raise ParameterError(
                f"unknown score {name!r}; choose one of: {', '.join(list_scores())}."
            )
        if name == "msp":
            gap = self.gap if j is None else self.gap[j]
            return np.exp(-np.asarray(gap, dtype=np.float64))
        arr = getattr(self, name)
        return arr if j is None else arr[j]

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f).nbytes for f in FIELDS)


@dataclass
class ScoreCube:
    """One method's scores and predictions at every grid p, for every split.

    ``splits[name]`` holds ``[P, N]`` arrays in grid order; ``unshaped[name]`` the
    ``[1, N]`` scores of the plain head (for the "unshaped" accuracy and baselines).
    """

    method: str
    threshold: str
    grid: np.ndarray
    seed: int
    bundle_hash: str
    bundle_name: str
    id_name: str
    ood_names: list[str]
    splits: dict[str, SplitCube]
    unshaped: dict[str, SplitCube]
    labels: np.ndarray | None = None
    fitted_thresholds: np.ndarray | None = None
    engine: str = "native"
    meta: dict[str, Any] = field(default_factory=dict)

    def freeze(self) -> ScoreCube:
        """Make every array read-only: cubes are shared between callers (dashboard sessions)."""
        for group in (self.splits, self.unshaped):
            for sc in group.values():
                for name in FIELDS:
                    getattr(sc, name).flags.writeable = False
        for arr in (self.grid, self.labels, self.fitted_thresholds):
            if arr is not None:
                arr.flags.writeable = False
        return self

    def index(self, p: float) -> int:
        """Row of the grid point ``p`` (exact up to 1e-9); clear error if not in the grid."""
        check_percentile(p)
        hits = np.flatnonzero(np.abs(self.grid - float(p)) <= 1e-9)
        if hits.size == 0:
            near = self.grid[np.argsort(np.abs(self.grid - float(p)))[:3]]
            raise ParameterError(
                f"p={p:g} is not in the cube grid of {self.method} ({self.grid.size} points "
                f"from {self.grid.min():g} to {self.grid.max():g}); nearest: "
                f"{', '.join(f'{v:g}' for v in sorted(near))}."
            )
        return int(hits[0])

    def scores(self, split: str, p: float, score: str = "energy") -> np.ndarray:
        """Scores ``[N]`` of one split at grid point ``p``."""
        return self._split(split).score(score, self.index(p))

    def preds(self, split: str, p: float) -> np.ndarray:
        """Argmax predictions ``[N]`` of one split at grid point ``p``."""
        return self._split(split).pred[self.index(p)]

    def _split(self, split: str) -> SplitCube:
        try:
            return self.splits[split]
        except KeyError:
            raise ParameterError(
                f"split {split!r} is not in this cube; it has: {', '.join(self.splits)}."
            ) from None

    def id_accuracy(self, p: float) -> dict[str, float | None]:
        """ID top-1 accuracy shaped at ``p`` and unshaped (None without labels)."""
        if self.labels is None:
            return {"shaped": None, "unshaped": None}
        labels = self.labels
        shaped = self.preds(self.id_name, p)
        return {
            "shaped": float(np.mean(shaped == labels)),
            "unshaped": float(np.mean(self.unshaped[self.id_name].pred[0] == labels)),
        }

    def accuracy_curve(self) -> np.ndarray | None:
        """ID accuracy at every grid point ``[P]`` (None without labels)."""
        if self.labels is None:
            return None
        return (self.splits[self.id_name].pred == self.labels[None, :]).mean(axis=1)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.splits.values()) + \
            sum(s.nbytes for s in self.unshaped.values())


# --------------------------------------------------------------------------- building


def normalize_grid(grid: Iterable[float]) -> np.ndarray:
    """Validated, sorted, de-duplicated grid (float64)."""
    values = sorted({round(check_percentile(p), 10) for p in grid})
    if not values:
        raise ParameterError("the p grid is empty.")
    return np.asarray(values, dtype=np.float64)


def percentiles(values: np.ndarray, grid: Iterable[float]) -> np.ndarray:
    """``[shaping.percentile_of(values, p) for p in grid]``, bit for bit, with one partition.

    ``np.percentile`` with a Python-float ``q`` interpolates in the array's dtype
    (float32 here), while an array of q interpolates in float64; the global
    thresholds must equal the per-p ones exactly, so the float32 linear
    interpolation is replicated from the order statistics of a single partition.
    """
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    n = flat.size
    if n == 0:
        raise FeatureError("cannot fit a threshold on an empty set of activations.")
    qs = [float(check_percentile(p)) / 100.0 for p in grid]
    vis = [n * q + (1.0 - q) - 1.0 for q in qs]
    lows = [n - 1 if vi >= n - 1 else int(np.floor(vi)) for vi in vis]
    highs = [n - 1 if vi >= n - 1 else lo + 1 for vi, lo in zip(vis, lows, strict=True)]
    part = np.partition(flat, np.unique(np.asarray(lows + highs, dtype=np.intp)))
    out = np.empty(len(qs), dtype=np.float64)
    for i, (vi, lo, hi) in enumerate(zip(vis, lows, highs, strict=True)):
        a, b = part[lo], part[hi]
        gamma = float(vi - np.floor(vi)) if vi < n - 1 else 0.0
        diff = b - a
        res = a + diff * np.float32(gamma)
        if gamma >= 0.5:
            res = b - diff * np.float32(1.0 - gamma)
        out[i] = float(res)
    return out


def fit_global_thresholds(ev: Evaluator, grid: np.ndarray) -> np.ndarray:
    """Global thresholds for every grid p: the p-th percentiles of id_fit (as the shaper)."""
    fit = ev.bundle.id_fit
    if fit is None:
        raise ParameterError(
            f"threshold='global' needs an 'id_fit' split (ID training features) and bundle "
            f"{ev.bundle.name} has none; use threshold='local' or re-extract with id_fit."
        )
    return percentiles(ev.features(fit.name).numpy(), grid)


def cube_threads() -> int:
    """Threads for the native kernel: ``ASH_CUBE_THREADS``, else torch's intra-op count."""
    env = os.environ.get("ASH_CUBE_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ParameterError(f"ASH_CUBE_THREADS must be an integer, got {env!r}.") from None
    return max(1, torch.get_num_threads())


def _draw_stream(seed: int, dim: int) -> Callable[[int], np.ndarray]:
    """Successive row blocks of ``torch.rand((N, D), generator=seed)`` scaled to [0, 10).

    Equal to the draws ``shaping.ash_rand`` makes for a whole split: torch's CPU
    generator fills a tensor sequentially, so blocks continue the same stream.
    """
    gen = torch.Generator().manual_seed(int(seed))

    def take(rows: int) -> np.ndarray:
        u = torch.rand((rows, dim), generator=gen, dtype=torch.float32)
        return (RAND_LOW + (RAND_HIGH - RAND_LOW) * u).numpy()

    return take


def _run_split(
    x: np.ndarray,
    weight: torch.Tensor,
    bias: torch.Tensor,
    grid: np.ndarray,
    counts: np.ndarray | None,
    thresholds: np.ndarray | None,
    variants: list[str],
    seed: int,
    engine: str,
    progress: Callable[[int], None] | None,
) -> tuple[dict[str, SplitCube], SplitCube]:
    """Cube of one split for several variants, plus its unshaped scores."""
    n = x.shape[0]
    nv = len(variants)
    outs = (np.empty((nv, grid.size, n), np.float32), np.empty((nv, grid.size, n), np.float32),
            np.empty((nv, grid.size, n), np.float32), np.empty((nv, grid.size, n), np.int32))
    full = (np.empty((1, n), np.float32), np.empty((1, n), np.float32),
            np.empty((1, n), np.float32), np.empty((1, n), np.int32))
    # Checkpoints go from the largest p (fewest survivors) to the smallest.
    order = np.arange(grid.size)[::-1].copy()
    draws = _draw_stream(seed, x.shape[1]) if "ash-rand" in variants else None
    if engine == "native":
        tile = _kernel.choose_tile(weight.shape[0])
        lib = _kernel.load_kernel(tile)
        assert lib is not None
        slots = np.full(4, -1, np.int32)
        for i, v in enumerate(variants):
            slots[CUBE_METHODS[v]] = i
        _kernel.run_native(
            lib, x, draws, _kernel.tiled_head(weight, bias, tile),
            None if counts is None else counts[order],
            None if thresholds is None else thresholds[order].astype(np.float32),
            order, slots, outs, full, threads=cube_threads(),
            block=BLOCK_ROWS, progress=progress,
        )
    else:
        _run_torch(x, draws, weight, bias, counts, thresholds, variants, outs, full, progress,
                   chunk=TORCH_CHUNK)
    cubes = {v: SplitCube(*(o[i] for o in outs)) for i, v in enumerate(variants)}
    return cubes, SplitCube(*full)


def _run_torch(x, draws, weight, bias, counts, thresholds, variants, outs, full, progress,
               chunk: int = 1024) -> None:
    """Pure-torch engine: per row chunk, band sparse products accumulated as prefix sums.

    Exact like the native kernel (fp32 logits, torch's own score functions), several
    times slower; used when no C compiler is available or ASH_CUBE_ENGINE=torch.
    """
    n, d = x.shape
    wt = weight.T.contiguous()
    p_count = (counts if counts is not None else thresholds).shape[0]
    order_j = np.arange(p_count)[::-1]
    thr32 = None if thresholds is None else torch.from_numpy(thresholds.astype(np.float32))
    idx_of = {v: i for i, v in enumerate(variants)}
    score_fns = (energy_score, _gap, maxlogit_score)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        rows = torch.from_numpy(np.ascontiguousarray(x[lo:hi]))
        m = hi - lo
        vals, order = torch.sort(rows, dim=1, descending=True, stable=True)
        u = None
        if draws is not None:
            u = torch.gather(torch.from_numpy(draws(m)), 1, order)
        s1 = rows.sum(dim=1)
        if thr32 is None:
            kk = torch.from_numpy(counts.astype(np.int64))[None, :].expand(m, -1)
        else:  # survivors: values > t, i.e. -values < -t in the ascending -values
            kk = torch.searchsorted((-vals).contiguous(),
                                    (-thr32)[None, :].expand(m, -1).contiguous(), side="left")
        ranks = torch.arange(d)
        a = torch.zeros(m, wt.shape[1])
        g = torch.zeros_like(a)
        r = torch.zeros_like(a)
        prev = torch.zeros(m, dtype=torch.int64)
        for j in order_j:
            k = kk[:, j]
            band = (ranks[None, :] >= prev[:, None]) & (ranks[None, :] < k[:, None])
            nnz = int(band.sum())
            if nnz:
                crow = torch.cat([torch.zeros(1, dtype=torch.int64),
                                  torch.cumsum(band.sum(dim=1), 0)])
                cols = order[band]

                def spmm(values: torch.Tensor, crow=crow, cols=cols, m=m) -> torch.Tensor:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)  # "beta" / invariants
                        return torch.sparse_csr_tensor(crow, cols, values, (m, d)) @ wt

                a += spmm(vals[band])
                if "ash-b" in idx_of:
                    g += spmm(torch.ones(nnz))
                if u is not None:
                    r += spmm(u[band])
            prev = k
            s2 = torch.where(ranks[None, :] < k[:, None], vals, torch.zeros(())).sum(dim=1)
            logits = {}
            if "ash-p" in idx_of:
                logits["ash-p"] = a + bias
            if "ash-s" in idx_of:
                safe = torch.where(s2 != 0, s2, torch.ones_like(s2))
                f = torch.exp(torch.where(s2 != 0, s1 / safe, torch.zeros_like(s1)))
                logits["ash-s"] = f[:, None] * a + bias
            if "ash-b" in idx_of:
                kf = k.to(torch.float32)
                fill = torch.where(kf > 0, s1 / kf.clamp_min(1.0), torch.zeros_like(s1))
                logits["ash-b"] = fill[:, None] * g + bias
            if "ash-rand" in idx_of:
                logits["ash-rand"] = r + bias
            for v, lg in logits.items():
                i = idx_of[v]
                for f_i, fn in enumerate(score_fns):
                    outs[f_i][i, j, lo:hi] = fn(lg).numpy()
                outs[3][i, j, lo:hi] = lg.argmax(dim=1).numpy()
        base = torch.addmm(bias, rows, weight.T)
        for f_i, fn in enumerate(score_fns):
            full[f_i][0, lo:hi] = fn(base).numpy()
        full[3][0, lo:hi] = base.argmax(dim=1).numpy()
        if progress:
            progress(m)


def _gap(logits: torch.Tensor) -> torch.Tensor:
    """logsumexp - max logit, in float64 (stored as float32; MSP = exp(-gap))."""
    lg = logits.to(torch.float64)
    return (torch.logsumexp(lg, dim=1) - lg.amax(dim=1)).to(torch.float32)


def choose_engine(num_classes: int, engine: str = "auto") -> str:
    """'native' or 'torch' (``auto``: native when the C kernel builds, else torch)."""
    if engine not in ("auto", "native", "torch"):
        raise ParameterError(f"unknown cube engine {engine!r}; use auto, native or torch.")
    if engine == "torch":
        return "torch"
    ok = _kernel.load_kernel(_kernel.choose_tile(num_classes)) is not None
    if engine == "native" and not ok:
        raise ParameterError(
            f"the native cube kernel is unavailable: {_kernel.kernel_status()}; use "
            "engine='torch' or 'auto'."
        )
    return "native" if ok else "torch"


def build_cubes(
    ev: Evaluator,
    methods: Sequence[str],
    grid: Iterable[float],
    threshold: str = "local",
    seed: int = 0,
    engine: str = "auto",
    progress: Progress | None = None,
) -> dict[str, ScoreCube]:
    """Compute the cubes of several ASH methods in one pass per split (no cache)."""
    seed = check_seed(seed)
    methods = list(dict.fromkeys(methods))
    for m in methods:
        spec = get_method(m)  # unknown names: a clear "unknown method" error
        if not is_cube_method(m):
            raise ParameterError(
                f"{m!r} is not computed by the cube engine (it covers "
                f"{', '.join(CUBE_METHODS)}); evaluate it with Evaluator."
            )
        check_threshold_mode(spec, threshold)
    if not methods:
        raise ParameterError("no methods to build a cube for.")
    if not ev.ood_names:
        raise ParameterError(
            f"bundle {ev.bundle.name} has no OOD split selected; select at least one."
        )
    g = normalize_grid(grid)
    dim = ev.bundle.dim
    eng = choose_engine(ev.weight.shape[0], engine)
    counts = thresholds = None
    if threshold == "local":
        counts = np.asarray([kept_count(dim, p) for p in g], dtype=np.int32)
    else:
        thresholds = fit_global_thresholds(ev, g)
    names = ev.split_names
    total = sum(len(ev.bundle.split(nm)) for nm in names)
    done = 0

    def tick(rows: int) -> None:
        nonlocal done
        done += rows
        if progress:
            progress(done, total)

    per_split: dict[str, dict[str, SplitCube]] = {}
    unshaped: dict[str, SplitCube] = {}
    for nm in names:
        x = ev.features(nm).numpy()
        per_split[nm], unshaped[nm] = _run_split(
            x, ev.weight, ev.bias, g, counts, thresholds, methods, seed, eng, tick)
    labels = ev.bundle.id_split.labels
    labels = None if labels is None else np.asarray(labels, dtype=np.int64)
    return {
        m: ScoreCube(
            method=m, threshold=threshold, grid=g, seed=int(seed) if m == "ash-rand" else 0,
            bundle_hash=ev.bundle.content_hash, bundle_name=ev.bundle.name,
            id_name=ev.id_name, ood_names=list(ev.ood_names),
            splits={nm: per_split[nm][m] for nm in names}, unshaped=unshaped, labels=labels,
            fitted_thresholds=thresholds, engine=eng,
        )
        for m in methods
    }


# --------------------------------------------------------------------------- cache


def default_cache_dir(bundle: Bundle) -> Path:
    """``<bundle>/.cube_cache`` when the bundle directory is writable, else a user cache."""
    env = os.environ.get("ASH_CUBE_CACHE")
    if env:
        return Path(env)
    if os.access(bundle.root, os.W_OK):
        return bundle.root / ".cube_cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ash-explorer" / "cubes"


def cube_key(bundle_hash: str, method: str, threshold: str, grid: np.ndarray, seed: int,
             splits: Sequence[str]) -> dict[str, Any]:
    """Everything a cached cube depends on (compared exactly when loading)."""
    return {
        "engine_version": ENGINE_VERSION,
        "bundle": bundle_hash,
        "method": method,
        "threshold": threshold,
        "grid": [float(v) for v in grid],
        "seed": int(seed) if method == "ash-rand" else 0,
        "splits": list(splits),
    }


def cube_path(cache_dir: Path, key: dict[str, Any]) -> Path:
    """Where the cube of ``key`` is cached: ``<cache_dir>/<bundle hash>/<method>-<mode>-<digest>``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / key["bundle"] / f"{key['method']}-{key['threshold']}-{digest}.safetensors"


_DTYPES = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("int32"): "I32",
           np.dtype("int64"): "I64"}


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
    if cube.fitted_thresholds is not None:
        out["thresholds"] = cube.fitted_thresholds
    return out


def _bytes(arr: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(arr)).cast("B")


def save_cube(cube: ScoreCube, path: Path, key: dict[str, Any]) -> Path:
    """Write a cube as safetensors (key + sha256 in ``__metadata__``), atomically."""
    tensors = _tensors(cube)
    header: dict[str, Any] = {}
    digest = hashlib.sha256()
    offset = 0
    for name, arr in tensors.items():
        nbytes = arr.nbytes
        header[name] = {"dtype": _DTYPES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + nbytes]}
        digest.update(_bytes(arr))
        offset += nbytes
    header["__metadata__"] = {
        "ash_cube": json.dumps(key, sort_keys=True),
        "sha256": digest.hexdigest(),
        "id_name": cube.id_name,
        "ood_names": json.dumps(cube.ood_names),
        "bundle_name": cube.bundle_name,
        "engine": cube.engine,
    }
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(struct.pack("<Q", len(blob)))
            fh.write(blob)
            for arr in tensors.values():
                fh.write(_bytes(arr))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path



def _read_metadata(path: Path) -> dict[str, str]:
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CubeCacheError(f"{path} is truncated")
        (n,) = struct.unpack("<Q", head)
        if n > path.stat().st_size:
            raise CubeCacheError(f"{path} has a corrupt header")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CubeCacheError(f"{path} has a corrupt header ({exc})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        raise CubeCacheError(f"{path} has no cube metadata")
    return meta


def load_cube(path: Path, key: dict[str, Any], verify: bool = True) -> ScoreCube:
    """Load a cached cube; ``CubeCacheError`` if it is stale (key) or corrupt (checksum)."""
    meta = _read_metadata(path)
    try:
        stored = json.loads(meta["ash_cube"])
    except (KeyError, json.JSONDecodeError):
        raise CubeCacheError(f"{path} has no valid cube key") from None
    if stored != json.loads(json.dumps(key, sort_keys=True)):
        raise CubeCacheError(f"{path} is stale (built for a different key)")
    try:
        arrays = read_safetensors(path, mmap=True)
    except BundleError as exc:
        raise CubeCacheError(str(exc)) from None
    if verify:
        digest = hashlib.sha256()
        for name in _offset_order(path):  # the order save_cube hashed them in
            digest.update(_bytes(arrays[name]))
        if digest.hexdigest() != meta.get("sha256"):
            raise CubeCacheError(f"{path} is corrupt (checksum mismatch)")
    try:
        id_name = meta["id_name"]
        ood_names = json.loads(meta["ood_names"])
        grid = np.asarray(arrays["grid"], dtype=np.float64)

        def split(nm: str, prefix: str = "") -> SplitCube:
            return SplitCube(*(np.asarray(arrays[f"{nm}/{prefix}{f}"]) for f in FIELDS))

        names = [id_name, *ood_names]
        cube = ScoreCube(
            method=key["method"], threshold=key["threshold"], grid=grid, seed=key["seed"],
            bundle_hash=key["bundle"], bundle_name=meta.get("bundle_name", ""),
            id_name=id_name, ood_names=ood_names,
            splits={nm: split(nm) for nm in names},
            unshaped={nm: split(nm, "unshaped_") for nm in names},
            labels=np.asarray(arrays["labels"]) if "labels" in arrays else None,
            fitted_thresholds=np.asarray(arrays["thresholds"]) if "thresholds" in arrays else None,
            engine=meta.get("engine", "native"), meta={"path": str(path), "cached": True},
        )
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise CubeCacheError(f"{path} is missing cube arrays ({exc})") from None
    for nm, sc in cube.splits.items():
        n = sc.energy.shape[-1]
        shapes = [getattr(sc, f).shape for f in FIELDS] + \
            [getattr(cube.unshaped[nm], f).shape for f in FIELDS]
        if shapes != [(grid.size, n)] * 4 + [(1, n)] * 4:
            raise CubeCacheError(f"{path} has arrays that do not match its grid")
    return cube


def _offset_order(path: Path) -> list[str]:
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    header.pop("__metadata__", None)
    return [k for k, _ in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])]


def get_cubes(
    source: Bundle | Evaluator,
    methods: Sequence[str],
    grid: Iterable[float],
    threshold: str = "local",
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    engine: str = "auto",
    progress: Progress | None = None,
) -> dict[str, ScoreCube]:
    """Cubes of several ASH methods: loaded from the cache, or built together and cached."""
    ev = source if isinstance(source, Evaluator) else Evaluator(source)
    seed = check_seed(seed)
    g = normalize_grid(grid)
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir(ev.bundle)
    out: dict[str, ScoreCube] = {}
    keys: dict[str, dict[str, Any]] = {}
    for m in dict.fromkeys(methods):
        key = cube_key(ev.bundle.content_hash, m, threshold, g, seed, ev.split_names)
        keys[m] = key
        path = cube_path(cdir, key)
        if use_cache and path.is_file():
            try:
                out[m] = load_cube(path, key)
                continue
            except CubeCacheError as exc:
                warnings.warn(f"rebuilding the score cube: {exc}", stacklevel=2)
    missing = [m for m in keys if m not in out]
    if missing:
        built = build_cubes(ev, missing, g, threshold, seed, engine, progress)
        for m, cube in built.items():
            if use_cache:
                try:
                    path = save_cube(cube, cube_path(cdir, keys[m]), keys[m])
                    cube.meta["path"] = str(path)
                except OSError as exc:
                    warnings.warn(f"could not cache the score cube in {cdir}: {exc}",
                                  stacklevel=2)
            out[m] = cube
    return {m: out[m].freeze() for m in keys}


def get_cube(
    source: Bundle | Evaluator,
    method: str,
    grid: Iterable[float],
    threshold: str = "local",
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    engine: str = "auto",
    progress: Progress | None = None,
) -> ScoreCube:
    """The cube of one ASH method over ``grid`` (cached beside the bundle; see module doc)."""
    return get_cubes(source, [method], grid, threshold, seed, cache_dir, use_cache, engine,
                     progress)[method]


# --------------------------------------------------------------------------- lookups


def point_metrics(
    cube: ScoreCube,
    p: float,
    score: str = "energy",
    convention: str = "id",
    ood: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Metrics of one grid point, shaped like ``EvalResult.to_dict()`` (fast path)."""
    check_convention(convention)
    get_score(score)
    names = cube.ood_names if ood is None else list(ood)
    unknown = [n for n in names if n not in cube.splits or n == cube.id_name]
    if unknown:
        raise ParameterError(
            f"unknown OOD split(s) {', '.join(map(repr, unknown))} in this cube; available: "
            f"{', '.join(cube.ood_names)}."
        )
    if not names:
        raise ParameterError("no OOD sets to evaluate; select at least one OOD split.")
    j = cube.index(p)
    ids = IdScores(cube.splits[cube.id_name].score(score, j))
    per_set = {n: ids.metrics(cube.splits[n].score(score, j), convention) for n in names}
    return {
        "bundle": cube.bundle_name,
        "method": cube.method,
        "p": float(cube.grid[j]),
        "threshold": cube.threshold,
        "score": score,
        "fpr_convention": convention,
        "fitted_threshold": None if cube.fitted_thresholds is None
        else float(cube.fitted_thresholds[j]),
        "id_accuracy": cube.id_accuracy(p),
        "ood": {n: m.as_dict() for n, m in per_set.items()},
        "average": average_metrics(per_set),
    }
