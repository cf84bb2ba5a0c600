"""Work over a bundle's splits in threads, where torch leaves cores idle.

With one intra-op thread per session (the dashboard) a large bundle's first exact page
would use one core of two; splits are independent and torch releases the GIL, so
scoring them side by side gives the same numbers sooner. The threads are short-lived,
so what they freed is handed back to the OS when they end (``memory``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from ash_core.engine.memory import release_free_memory


def split_workers(device: torch.device) -> int:
    """How many splits to score at once: the cores torch's intra-op threads leave idle
    (1 on a GPU, or when torch already uses every core, as the CLI does by default)."""
    if device.type != "cpu":
        return 1
    return max(1, (os.cpu_count() or 1) // max(1, torch.get_num_threads()))


def map_in_threads(fn: Callable[[str], Any], names: Sequence[str],
                   device: torch.device) -> dict[str, Any]:
    """``{name: fn(name)}``, in ``split_workers(device)`` threads (in order, in this
    thread, when that is one); ``fn`` must treat splits independently."""
    workers = min(len(names), split_workers(device))
    if workers <= 1:
        return {n: fn(n) for n in names}
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="ash-split") as pool:
            return dict(zip(names, pool.map(fn, names), strict=True))
    finally:
        release_free_memory()  # what the finished threads' arenas hold (see .memory)
