"""Named crash points for kill-and-resume tests.

Code that must survive a kill at any moment (the bundle writer, extraction) calls
``checkpoint("tag")`` at the moments worth testing. Normally this is a no-op (one
environment lookup). A test sets ``ASH_FAULT_AT=tag`` (or ``tag:N`` for the N-th time
that tag is reached, 1-based) in a child process's environment, and the child then
kills itself with SIGKILL at exactly that point: no cleanup handler, no ``finally``,
as when a machine loses power or a user presses kill -9.

``ASH_FAULT_TRACE=FILE`` appends every tag reached to ``FILE``, one a line: an
uninterrupted run's trace lists every point a kill campaign can choose from
(``tests/test_kill_campaign.py``).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

FAULT_ENV = "ASH_FAULT_AT"
TRACE_ENV = "ASH_FAULT_TRACE"
_seen: Counter[str] = Counter()


def checkpoint(tag: str) -> None:
    """Die here with SIGKILL if ``$ASH_FAULT_AT`` names this tag (and this occurrence)."""
    trace = os.environ.get(TRACE_ENV)
    if trace:
        with open(trace, "a", encoding="utf-8") as fh:
            fh.write(tag + "\n")
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    name, sep, nth = spec.rpartition(":")
    if not (sep and nth.isdigit()):  # no occurrence count: the whole spec is the tag
        name, nth = spec, "1"
    if name != tag:
        return
    _seen[tag] += 1
    if _seen[tag] == int(nth):
        os.kill(os.getpid(), signal.SIGKILL)
