"""Build and load the native score-cube kernel (``kernel.c`` + ``kernel_core.h``), or say why not.

The kernel is plain C99 compiled at first use with the system C compiler
(``cc -O3 -march=native``) into a per-user cache directory, keyed by a hash of the
source, the compiler, the flags and the CPU, and loaded with ``ctypes`` (no Python
headers, no OpenMP). When no compiler is available, or ``ASH_CUBE_BACKEND=torch`` (the
older ``ASH_CUBE_ENGINE=torch`` still works) is set, ``load_kernel`` returns None and
the cube falls back to the (exact, slower) torch backend.

Security: a library is only loaded from a directory owned by us and not writable by
group or others (``private_dir``), and only when the library file itself passes the
same check. The candidates are ``$XDG_CACHE_HOME/ash-explorer/kernels`` (default
``~/.cache``), then ``$TMPDIR/ash-explorer-kernels-<uid>``; when neither passes (say
another user pre-created the predictable one), the kernel is compiled into a fresh
``tempfile.mkdtemp()`` directory instead.
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
from pathlib import Path

from ash_core.bundle.atomic import clean_stale_temps
from ash_core.cube.private_dir import (
    UntrustedPath,
    ensure_private_dir,
    why_untrusted_dir,
    why_untrusted_file,
)

SOURCE = Path(__file__).with_name("kernel.c")
#: Every file the build reads (``kernel.c`` includes the header): all are in the build key.
SOURCES = (SOURCE, Path(__file__).with_name("kernel_core.h"))
ENV_BACKEND = "ASH_CUBE_BACKEND"
ENV_BACKEND_OLD = "ASH_CUBE_ENGINE"  # also read, so that existing setups keep working
_lock = threading.Lock()
_cache: dict[int, ctypes.CDLL | None] = {}
_why: dict[int, str] = {}


def env_backend() -> str:
    """The backend asked for in the environment ("auto" when unset)."""
    return (os.environ.get(ENV_BACKEND) or os.environ.get(ENV_BACKEND_OLD) or "auto").strip()


def _cpu_id() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def build_dir_candidates() -> list[Path]:
    """Where a kernel may be built, in order of preference (each must pass the checks)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return [Path(base) / "ash-explorer" / "kernels",
            Path(tempfile.gettempdir()) / f"ash-explorer-kernels-{os.geteuid()}"]


def private_build_dir() -> Path:
    """The first candidate that is (or can be made) private to us, else a fresh mkdtemp."""
    for cand in build_dir_candidates():
        try:
            return ensure_private_dir(cand)
        except (OSError, RuntimeError):
            continue
    return Path(tempfile.mkdtemp(prefix="ash-explorer-kernels-"))


def _flags(tile: int) -> list[str]:
    flags = ["-O3", "-std=c11", "-fPIC", "-shared", "-fopenmp-simd", f"-DTILE={tile}",
             "-fno-math-errno"]
    if platform.machine() in ("x86_64", "AMD64", "aarch64", "arm64"):
        flags.append("-march=native")
    if "avx512f" in _cpu_id():
        flags.append("-mprefer-vector-width=512")
    return flags


def find_compiler() -> str:
    """``$CC``, else ``cc``/``gcc`` on PATH; RuntimeError when there is none."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler (cc/gcc) found")
    return cc


def library_name(tile: int, cc: str) -> str:
    """File name of the build for this tile, compiler, flags, source and CPU."""
    # the compiler is part of the key: another CC must not load this one's build
    key = b"".join(p.read_bytes() for p in SOURCES)
    key += " ".join([cc, *_flags(tile)]).encode() + _cpu_id().encode()
    return f"ash_cube_t{tile}_{hashlib.sha256(key).hexdigest()[:16]}.so"


def load_kernel(tile: int = 64) -> ctypes.CDLL | None:
    """The compiled kernel for this class-tile width, or None (see ``kernel_status``)."""
    with _lock:
        if tile in _cache:
            return _cache[tile]
        lib = None
        if env_backend() == "torch":
            _why[tile] = f"{ENV_BACKEND}=torch"
        else:
            try:
                lib = _compile_and_load(tile)
            except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
                _why[tile] = f"native kernel unavailable ({exc}); using the torch backend"
        _cache[tile] = lib
        return lib


def kernel_status(tile: int = 64) -> str:
    """'native' when the C kernel is in use, else the reason for the torch fallback."""
    return "native" if load_kernel(tile) is not None else _why.get(tile, "torch")


def _compile(cc: str, tile: int, lib_path: Path) -> None:
    """Compile ``kernel.c`` to ``lib_path`` (atomically: a private temporary, named as
    ``atomic_write`` names one, renamed)."""
    clean_stale_temps(lib_path.parent)  # what a killed compile left
    fd, tmp = tempfile.mkstemp(prefix=f".{lib_path.name}.{os.getpid()}-", suffix=".tmp",
                               dir=lib_path.parent)
    os.close(fd)
    try:
        proc = subprocess.run([cc, *_flags(tile), str(SOURCE), "-o", tmp, "-lm"],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"compiling kernel.c failed: {proc.stderr.strip()[:500]}")
        os.chmod(tmp, 0o700)  # the linker may recreate it with the umask's mode
        os.replace(tmp, lib_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _trusted_library(tile: int, cc: str) -> Path:
    """A library we built, in a private directory, checked just before it is loaded."""
    name = library_name(tile, cc)
    lib_path = private_build_dir() / name
    if os.path.lexists(lib_path) and why_untrusted_file(lib_path):
        lib_path = Path(tempfile.mkdtemp(prefix="ash-explorer-kernels-")) / name
    if not os.path.lexists(lib_path):
        _compile(cc, tile, lib_path)
    why = why_untrusted_dir(lib_path.parent) or why_untrusted_file(lib_path)
    if why:
        raise UntrustedPath(f"refusing to load the kernel: {why}")
    return lib_path


def _compile_and_load(tile: int) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(_trusted_library(tile, find_compiler())))
    fn = lib.ash_cube_rows
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    fn.argtypes = [i64, i64, i64, i64, i64, ptr, ptr, ptr, ptr, i64, ctypes.c_int, ptr, ptr, ptr,
                   ptr, ptr, ptr, ptr, ptr, ptr]
    fn.restype = ctypes.c_int
    # ReAct / SCALE: (n0, n1, N, D, Cp, X, Wt or Z, bias, J, clips or counts, jmap,
    # energy, gap, maxlogit, pred, full_out)
    for grid_fn in (lib.ash_clip_rows, lib.ash_scale_rows):
        grid_fn.argtypes = [i64, i64, i64, i64, i64, ptr, ptr, ptr, i64, ptr, ptr, ptr, ptr,
                            ptr, ptr, ptr]
        grid_fn.restype = ctypes.c_int
    return lib
