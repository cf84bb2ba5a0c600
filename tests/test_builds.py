"""Background cube builds (dashboard.builds): one build per key, shared, failures reported."""

from __future__ import annotations

import threading

from dashboard.builds import Builds


def _gated(calls: list, gate: threading.Event, value=None, error: Exception | None = None):
    def make(progress):
        calls.append(1)
        progress(1, 4)
        assert gate.wait(10)
        progress(4, 4)
        if error is not None:
            raise error
        return value

    return make


def test_a_key_is_built_once_however_often_it_is_asked_for():
    builds, calls, gate = Builds(keep=2), [], threading.Event()
    first = builds.start("k", _gated(calls, gate, value="cube"))
    again = [builds.start("k", _gated(calls, gate, value="other")) for _ in range(5)]
    assert all(job is first for job in again) and builds.running("k") is first
    assert not first.done
    gate.set()
    assert first.wait(10) and first.value == "cube" and first.error is None
    assert first.fraction == 1.0 and "4/4 rows" in first.describe()
    assert builds.start("k", _gated(calls, gate)) is None  # ready: nothing to build
    assert builds.ready.get("k") == "cube" and builds.running("k") is None
    assert len(calls) == 1


def test_builds_run_one_at_a_time_and_a_queued_one_says_so():
    builds, calls, gate = Builds(keep=2), [], threading.Event()
    a = builds.start("a", _gated(calls, gate, value=1))
    b = builds.start("b", _gated(calls, gate, value=2))
    for _ in range(100):  # a holds the worker; b waits for it
        if a.started:
            break
        a.wait(0.01)
    assert a.started and not b.started and b.describe().startswith("queued")
    gate.set()
    assert a.wait(10) and b.wait(10) and (a.value, b.value) == (1, 2)


def test_a_failure_is_kept_until_reported_then_retried():
    builds, calls, gate = Builds(keep=2), [], threading.Event()
    gate.set()
    job = builds.start("k", _gated(calls, gate, error=OSError("disk full")))
    assert job.wait(10) and isinstance(job.error, OSError)
    assert builds.start("k", _gated(calls, gate)) is job  # not rebuilt behind the page's back
    assert str(builds.take_failure(job)) == "disk full"
    retry = builds.start("k", _gated(calls, gate, value="cube"))
    assert retry is not job and retry.wait(10) and retry.value == "cube"
    assert len(calls) == 2


def test_a_build_drops_the_least_recently_used_cube_before_it_starts():
    """At most ``keep`` cubes in memory, also while the next one is built (at ImageNet
    scale each is 132 MB, on top of the build's own buffers)."""
    builds, held = Builds(keep=2), []

    def make(value):
        def run(progress):
            held.append(len(builds.ready))  # cubes held while this one is made
            return value
        return run

    for key in ("a", "b", "c"):
        assert builds.start(key, make(key.upper())).wait(10)
    assert held == [0, 1, 1]  # "a" was dropped before "c" was made, not after
    assert builds.ready.get("a") is None and builds.ready.get("c") == "C"
    assert builds.ready.get("b") == "B"


def test_a_build_reports_the_cpu_time_of_its_own_thread():
    """What a preparation costs (bench_dashboard's ratio to a dense pass): the CPU time of
    the build's thread, not the wall time (a page's reruns meanwhile are not the build's)."""
    import time

    builds = Builds(keep=2)

    def sleeps(progress):
        time.sleep(0.3)
        return "slept"

    def works(progress):
        end = time.thread_time() + 0.2
        while time.thread_time() < end:
            pass
        return "worked"

    slept, worked = builds.start("s", sleeps), builds.start("w", works)
    assert slept.wait(10) and worked.wait(10)
    assert slept.cpu_s < 0.1 and 0.2 <= worked.cpu_s < 1.0
    assert builds.cpu_s == {"s": slept.cpu_s, "w": worked.cpu_s}
