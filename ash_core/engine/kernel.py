"""Build, load and call the native score-cube kernel (``kernel.c``), or say why not.

The kernel is plain C99 compiled at first use with the system C compiler
(``cc -O3 -march=native``) into a per-user cache directory, keyed by a hash of the
source, the flags and the CPU, and loaded with ``ctypes`` (no Python headers, no
OpenMP: row ranges run on Python threads, ``ctypes`` releases the GIL). When no
compiler is available, or ``ASH_CUBE_ENGINE=torch`` is set, ``load_kernel`` returns
None and the cube falls back to the (exact, slower) pure-torch engine.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

SOURCE = Path(__file__).with_name("kernel.c")
ENV_ENGINE = "ASH_CUBE_ENGINE"
_lock = threading.Lock()
_cache: dict[int, ctypes.CDLL | None] = {}
_why: dict[int, str] = {}


def _cpu_id() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def _build_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ash-explorer" / "kernels"


def _flags(tile: int) -> list[str]:
    flags = ["-O3", "-std=c11", "-fPIC", "-shared", "-fopenmp-simd", f"-DTILE={tile}",
             "-fno-math-errno"]
    if platform.machine() in ("x86_64", "AMD64", "aarch64", "arm64"):
        flags.append("-march=native")
    if "avx512f" in _cpu_id():
        flags.append("-mprefer-vector-width=512")
    return flags


def load_kernel(tile: int = 64) -> ctypes.CDLL | None:
    """The compiled kernel for this class-tile width, or None (see ``kernel_status``)."""
    with _lock:
        if tile in _cache:
            return _cache[tile]
        lib = None
        if os.environ.get(ENV_ENGINE, "auto") == "torch":
            _why[tile] = f"{ENV_ENGINE}=torch"
        else:
            try:
                lib = _compile_and_load(tile)
            except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
                _why[tile] = f"native kernel unavailable ({exc}); using the torch engine"
        _cache[tile] = lib
        return lib


def kernel_status(tile: int = 64) -> str:
    """'native' when the C kernel is in use, else the reason for the torch fallback."""
    return "native" if load_kernel(tile) is not None else _why.get(tile, "torch")


def _compile_and_load(tile: int) -> ctypes.CDLL:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler (cc/gcc) found")
    src = SOURCE.read_bytes()
    flags = _flags(tile)
    # the compiler is part of the key: another CC must not load this one's build
    key = src + " ".join([cc, *flags]).encode() + _cpu_id().encode()
    tag = hashlib.sha256(key).hexdigest()[:16]
    out_dir = _build_dir()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(out_dir, os.W_OK):
            raise OSError(f"{out_dir} is not writable")
    except OSError:
        out_dir = Path(tempfile.gettempdir()) / f"ash-explorer-kernels-{os.getuid()}"
        out_dir.mkdir(parents=True, exist_ok=True)
    lib_path = out_dir / f"ash_cube_t{tile}_{tag}.so"
    if not lib_path.is_file():
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
        os.close(fd)
        try:
            proc = subprocess.run([cc, *flags, str(SOURCE), "-o", tmp, "-lm"],
                                  capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"compiling kernel.c failed: {proc.stderr.strip()[:500]}")
            os.replace(tmp, lib_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    lib = ctypes.CDLL(str(lib_path))
    fn = lib.ash_cube_rows
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    fn.argtypes = [i64, i64, i64, i64, i64, ptr, ptr, ptr, ptr, i64, ctypes.c_int, ptr, ptr, ptr,
                   ptr, ptr, ptr, ptr, ptr, ptr]
    fn.restype = ctypes.c_int
    return lib


def choose_tile(num_classes: int) -> int:
    """Class-tile width: 16 for small heads (CIFAR-10), 64 otherwise."""
    return 16 if num_classes <= 16 else 64


def tiled_head(weight: torch.Tensor, bias: torch.Tensor, tile: int) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """W [C, D] -> [Cp/tile, D, tile] fp32 (zero padded); bias -> [Cp] (-inf padded)."""
    c, d = weight.shape
    cp = -(-c // tile) * tile
    wt = np.zeros((cp, d), dtype=np.float32)
    wt[:c] = weight.numpy()
    tiled = np.ascontiguousarray(wt.reshape(cp // tile, tile, d).transpose(0, 2, 1))
    b = np.full(cp, -np.inf, dtype=np.float32)
    b[:c] = bias.numpy()
    return tiled, b


def run_native(
    lib: ctypes.CDLL,
    x: np.ndarray,
    draws: Callable[[int], np.ndarray] | None,
    head: tuple[np.ndarray, np.ndarray],
    counts: np.ndarray | None,
    thresholds: np.ndarray | None,
    jmap: np.ndarray,
    slots: np.ndarray,
    outs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    full: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
    threads: int,
    block: int = 4096,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Fill ``outs`` ([nslot, J, N] energy/msp/maxlogit/pred) and ``full`` for all rows.

    Rows go in blocks of ``block`` (in order, so ``draws(n_rows)`` can continue one
    seeded generator); each block is split across ``threads`` Python threads.
    """
    n, d = x.shape
    wt, bias = head
    cp = bias.shape[0]
    j = len(jmap)
    mode = 0 if counts is not None else 1
    counts_arr = np.ascontiguousarray(counts if counts is not None else np.zeros(1), np.int32)
    thr_arr = np.ascontiguousarray(thresholds if thresholds is not None else np.zeros(1),
                                   np.float32)
    slot_arr = np.ascontiguousarray(slots, np.int32)
    jmap_arr = np.ascontiguousarray(jmap, np.int32)
    energy, msp, maxlogit, pred = outs
    for a in (*outs, *(full or ())):
        if not a.flags.c_contiguous:
            raise ValueError("kernel outputs must be C-contiguous")
    full_ptrs = None
    if full is not None:
        full_ptrs = (ctypes.c_void_p * 4)(*(a.ctypes.data for a in full))

    def ptr(a: np.ndarray | None) -> int | None:
        return None if a is None else a.ctypes.data

    def work(lo: int, hi: int, xb: np.ndarray, db: np.ndarray | None) -> None:
        rc = lib.ash_cube_rows(lo, hi, n, d, cp, ptr(xb), ptr(db), ptr(wt), ptr(bias), j,
                               mode, ptr(counts_arr), ptr(thr_arr), ptr(slot_arr),
                               ptr(jmap_arr), ptr(energy), ptr(msp), ptr(maxlogit), ptr(pred),
                               full_ptrs)
        if rc != 0:
            raise MemoryError("score-cube kernel could not allocate its row buffers")

    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        for b0 in range(0, n, block):
            b1 = min(n, b0 + block)
            db = None if draws is None else np.ascontiguousarray(draws(b1 - b0), np.float32)
            step = -(-(b1 - b0) // max(1, threads))
            jobs = []
            for lo in range(b0, b1, step):
                hi = min(b1, lo + step)
                xb = np.ascontiguousarray(x[lo:hi], np.float32)
                sub = None if db is None else db[lo - b0:hi - b0]
                if pool is None:
                    work(lo, hi, xb, sub)
                else:
                    jobs.append(pool.submit(work, lo, hi, xb, sub))
            for job in jobs:
                job.result()
            if progress:
                progress(b1 - b0)
    finally:
        if pool is not None:
            pool.shutdown()
