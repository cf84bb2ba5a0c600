"""``Once``: a thread-safe map whose values are computed at most once per key.

The dashboard's threads (a page's split threads, a background prefetch) ask an
``Evaluator`` for the same unshaped results at the same time; the second asker waits for
the first one's value instead of computing it again (one dense pass at ImageNet scale).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any


class Once:
    """``get(key, make)``: the value stored under ``key``, made by ``make()`` on first use
    while other askers of that key wait (askers of other keys do not). A ``make`` that
    raises stores nothing: the next asker tries again."""

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._values

    def peek(self, key: Hashable, default: Any = None) -> Any:
        """The stored value, or ``default`` without making it."""
        return self._values.get(key, default)

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        if key in self._values:
            return self._values[key]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._values:
                self._values[key] = make()
        return self._values[key]


class Recent(Once):
    """``Once`` that keeps the ``size`` most recently used values only (for values of
    megabytes each, made per setting: a score's per-split tables), and of those no more
    than ``max_bytes`` in total by ``nbytes(value)`` (the most recent is always kept)."""

    def __init__(self, size: int, max_bytes: int | None = None,
                 nbytes: Callable[[Any], int] = lambda value: 0) -> None:
        super().__init__()
        self.size = size
        self.max_bytes = max_bytes
        self._nbytes = nbytes
        self._used: list[Hashable] = []

    def _over(self) -> bool:
        if len(self._used) > self.size:
            return True
        if self.max_bytes is None or len(self._used) <= 1:
            return False
        return sum(self._nbytes(self._values.get(k)) for k in self._used) > self.max_bytes

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        value = super().get(key, make)
        with self._guard:
            if key in self._used:
                self._used.remove(key)
            self._used.append(key)
            while self._over():
                old = self._used.pop(0)
                self._values.pop(old, None)
                self._locks.pop(old, None)
        return value
