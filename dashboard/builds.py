"""Background builds of score cubes, shared by every session of the server.

A cube at ImageNet scale takes tens of seconds to prepare; the page must not wait for it.
``Builds.start(key, make)`` runs ``make(progress)`` in a daemon thread, at most one build
per key (a second ``start`` of the same key returns the running build), and builds one at
a time (a queued build waits, reported as "queued", so two builds never compete for the
same cores and memory). A build first drops the least recently used ready cube when
``keep`` are ready, so cubes in memory never exceed ``keep``. A finished build holds its
cube or the exception it raised: a failure is reported to the page that reads it
(``take_failure``), never swallowed, and then forgotten so that a later rerun may try
again. Nothing here draws: the page polls
``Build.fraction``/``Build.done`` from its own thread.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from ash_core.engine.memory import release_free_memory
from dashboard.cache import LRU, Progress

#: Set when the interpreter exits: a running build stops at its next progress report, since
#: a thread still inside torch when the process ends aborts it (exit status 134).
_EXITING = threading.Event()
#: At exit, how long to wait for running builds to reach their next progress report.
EXIT_WAIT_S = 10.0


class BuildStopped(Exception):
    """A build stopped because the process is exiting."""


class Build:
    """One cube being built: its progress, and when done its cube or its error."""

    def __init__(self, key: Hashable, unit: str = "rows"):
        self.key, self.unit = key, unit  # what ``progress`` counts, for ``describe``
        self.rows_done = 0
        self.rows_total = 0
        self.started = False  # False while queued behind another build
        #: CPU seconds the build's thread spent making the value (set when it finishes)
        self.cpu_s: float | None = None
        self.value: Any = None
        self.error: BaseException | None = None
        self._done = threading.Event()

    def progress(self, done: int, total: int) -> None:
        if _EXITING.is_set():
            raise BuildStopped("the server is exiting")
        self.rows_done, self.rows_total = int(done), int(total)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def fraction(self) -> float:
        return min(1.0, self.rows_done / self.rows_total) if self.rows_total else 0.0

    def wait(self, seconds: float) -> bool:
        """Block up to ``seconds``; True when the build has finished (or failed)."""
        return self._done.wait(seconds)

    def describe(self) -> str:
        if not self.started:
            return "queued behind another preparation"
        if not self.rows_total:
            return "starting"
        return f"{self.rows_done:,}/{self.rows_total:,} {self.unit}"

    def _finish(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error
        self._done.set()


class Builds:
    """The finished cubes (``ready``: an LRU of ``keep`` entries) and the running or failed
    builds, by key. One lock guards both, so a key is never built twice."""

    def __init__(self, keep: int):
        self.ready = LRU(keep)
        self._jobs: dict[Hashable, Build] = {}
        self._lock = threading.Lock()
        self._one_at_a_time = threading.Lock()
        #: key -> CPU seconds of its last finished build (what a preparation costs)
        self.cpu_s: dict[Hashable, float] = {}

    def running(self, key: Hashable) -> Build | None:
        """The build of ``key`` when one runs, is queued, or failed and is not reported."""
        with self._lock:
            return self._jobs.get(key)

    def start(self, key: Hashable, make: Callable[[Progress], Any], unit: str = "rows"
              ) -> Build | None:
        """None when the cube of ``key`` is ready (``ready.get(key)``); else its build:
        the one running (or failed and not yet reported), or a new one started in a
        background thread."""
        with self._lock:
            if self.ready.get(key) is not None:
                return None
            job = self._jobs.get(key)
            if job is None:
                job = self._jobs[key] = Build(key, unit)
                threading.Thread(target=self._run, args=(job, make), daemon=True,
                                 name=f"ash-cube-build-{len(self._jobs)}").start()
            return job

    def take_failure(self, job: Build) -> BaseException | None:
        """The error of a failed build, forgetting the build (a later start retries)."""
        with self._lock:
            if self._jobs.get(job.key) is job:
                del self._jobs[job.key]
        return job.error

    def _run(self, job: Build, make: Callable[[Progress], Any]) -> None:
        with self._one_at_a_time:
            job.started = True
            # the least recently used cube goes first: a build never holds keep + 1 cubes
            # (at ImageNet scale 132 MB each, on top of the build's own buffers)
            self.ready.make_room()
            try:
                cpu = time.thread_time()
                value = make(job.progress)
                job.cpu_s = time.thread_time() - cpu
                release_free_memory()  # the build's buffers, freed in this thread's arena
            except BaseException as exc:  # noqa: BLE001 - kept for the page to report
                job._finish(error=exc)
                return
        with self._lock:
            self.ready.put(job.key, value)
            self._jobs.pop(job.key, None)
            self.cpu_s[job.key] = job.cpu_s
        job._finish(value)


@atexit.register
def _stop_builds() -> None:
    """Stop every running build at its next progress report and wait for it (bounded)."""
    _EXITING.set()
    deadline = time.monotonic() + EXIT_WAIT_S
    for thread in threading.enumerate():
        if thread.name.startswith("ash-cube-build-"):
            thread.join(max(0.0, deadline - time.monotonic()))
