"""ASH-RAND's draws: one independent stream per (seed, split, row).

Row ``i`` of split ``s`` under seed ``seed`` draws its D values from a counter-based
generator (numpy's ``Philox``: 4 x 64 bits, i.e. 8 float32 uniforms, per counter step):
the key is ``SeedSequence([seed < 0, |seed|, *sha256(s)[:16] as four little-endian uint32
words]).generate_state(2, uint64)`` and the row's values are the first D float32 uniforms from counter
``i * ceil(D / 8)`` on, times ``high - low`` plus ``low`` in float32. A row's draws therefore depend
on nothing but (seed, split name, row index, D): any subset of rows, any block size, any
order and any engine (exact, score cube, the inspector's one row, a layer's replay) draws
the same values, and two splits, even byte copies of each other, draw independently.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

#: ASH-RAND's survivors: uniform(LOW, HIGH) (the official code's torch.rand * 10)
LOW, HIGH = 0.0, 10.0
#: names this scheme in every cache key of ASH-RAND's numbers (another scheme: new entries)
SCHEME = "philox-seed-split-row-1"


@functools.lru_cache(maxsize=256)
def stream_key(seed: int, split: str) -> tuple[int, int]:
    """The Philox key of (seed, split): a SeedSequence of the seed and the split's name."""
    digest = hashlib.sha256(split.encode("utf-8")).digest()[:16]
    words = np.frombuffer(digest, dtype="<u4").tolist()
    seed = int(seed)  # any 64-bit seed, negative ones too, each its own key
    state = np.random.SeedSequence([int(seed < 0), abs(seed), *words]).generate_state(
        2, np.uint64)
    return int(state[0]), int(state[1])


def _steps(dim: int) -> int:
    return -(-dim // 8)  # counter steps per row: 8 float32 uniforms each


def row_draws(seed: int, split: str, start: int, n: int, dim: int,
              low: float = LOW, high: float = HIGH) -> np.ndarray:
    """Draws of rows ``start .. start + n - 1`` of ``split``: float32 ``[n, dim]``."""
    if n <= 0 or dim <= 0:
        return np.zeros((max(n, 0), max(dim, 0)), dtype=np.float32)
    bits = np.random.Philox(key=np.array(stream_key(seed, split), dtype=np.uint64))
    steps = _steps(dim)
    bits.advance(int(start) * steps)
    u = np.random.Generator(bits).random((n, 8 * steps), dtype=np.float32)
    if 8 * steps != dim:
        u = np.ascontiguousarray(u[:, :dim])
    u *= np.float32(high - low)
    if low:
        u += np.float32(low)
    return u


def draws_at(seed: int, split: str, rows: np.ndarray, dim: int,
             low: float = LOW, high: float = HIGH) -> np.ndarray:
    """Draws of the rows ``rows`` (indices in the split, any order): float32 ``[len, dim]``,
    made run by run of consecutive indices."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    out = np.empty((rows.size, max(dim, 0)), dtype=np.float32)
    if rows.size == 0:
        return out
    if (rows < 0).any():
        raise ValueError(f"row indices must be >= 0, got {int(rows.min())}.")
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, rows.size], strict=True):
        out[lo:hi] = row_draws(seed, split, int(rows[lo]), int(hi - lo), dim, low, high)
    return out
