"""Values a page shows beside its numbers, made in one background thread: the newest
request first, older ones not waited for.

A parameter move must show its numbers at once; what only annotates them (bootstrap
intervals) is requested here and drawn when ready (the page polls ``get``). One daemon
thread makes one value at a time, so two requests never compete for the cores with each
other; a request not yet started is replaced by a newer one (a slider dragged over ten
values makes the intervals of the last one, not of all ten: whoever still shows an older
value asks again). A value that failed is kept as its exception, for the page to say why.
Nothing here draws, and no maths.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

from dashboard.cache import LRU


class Latest:
    """``request(key, make)`` and ``get(key)``; ``value(key, make)`` where a caller must
    have the value now (a report)."""

    def __init__(self, keep: int):
        self.ready = LRU(keep)
        self._cv = threading.Condition()
        self._wanted: tuple[Hashable, Callable[[], Any]] | None = None
        self._running: Hashable | None = None
        self._thread: threading.Thread | None = None

    def get(self, key: Hashable) -> Any:
        """The value (or the exception that making it raised), or None while not made."""
        return self.ready.get(key)

    def pending(self, key: Hashable) -> bool:
        """Whether ``key`` is being made or waits to be."""
        with self._cv:
            return self._running == key or (self._wanted is not None
                                            and self._wanted[0] == key)

    def request(self, key: Hashable, make: Callable[[], Any]) -> None:
        """Have ``make()`` made in the background unless it is ready or under way; it
        replaces a request that has not started."""
        with self._cv:
            if self.ready.get(key) is not None or self._running == key:
                return
            self._wanted = (key, make)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name="ash-background-values")
                self._thread.start()
            self._cv.notify_all()

    def value(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The value now: ready, awaited when under way, else made in this thread (an
        exception it raised is raised here)."""
        with self._cv:
            while self._running == key:
                self._cv.wait()
        found = self.ready.get(key)
        if found is None:
            found = make()
            self.ready.put(key, found)
        if isinstance(found, BaseException):
            raise found
        return found

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._wanted is None:
                    self._cv.wait()
                (key, make), self._wanted = self._wanted, None
                self._running = key
            try:
                value = make()
            except Exception as exc:  # noqa: BLE001 - kept for the page to report
                value = exc
            self.ready.put(key, value)
            with self._cv:
                self._running = None
                self._cv.notify_all()
