"""How much of an item's CPU time runs in C functions: the only code that may release the GIL.

Calibration runs its first timed items under ``sys.setprofile`` (``CShare``),
which reports every call into a C function and its return.  The calling
thread's CPU time between the two is C code's; the rest ran Python bytecode,
which holds the GIL on an interpreter that has one.  Items that spend almost
none of their CPU in C cannot run in parallel on threads, and the thread probe,
which would keep the other cores idle while it runs, is skipped
(``_core._sampling.probe_after_profile``).  C code that calls back into Python
(``sorted`` with a ``key``) counts as C only until its first callback.

The serial sample's meter stops after ``PROFILE_EVENTS`` profiler events, so
call-heavy items pay at most a fraction of a millisecond for it in all; where it
read nothing usable, a few more items run under an unbounded meter
(``c_cpu_share``) before the probe.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from typing import TYPE_CHECKING, Any

from ._sample import run_kept

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType, TracebackType

__all__ = ["CShare", "c_cpu_share"]

#: Profiler events that end a C function's span: its return, its exception, or a call back into Python.
_C_ENDS = frozenset({"c_return", "c_exception", "call"})


class CShare:
    """The calling thread's CPU time in C functions over its CPU time, while installed (``with meter:``).

    Installed around batches of items, never between them, for at most ``events``
    profiler events and until it has seen ``cpu_s`` of CPU time; a profiler set
    by someone else is never replaced (the meter then reads nothing).
    """

    def __init__(
        self, events: float = math.inf, cpu_s: float = math.inf, thread_time: Callable[[], float] = time.thread_time
    ) -> None:
        self.budget = events
        self.events_left = events
        self.cpu_s = cpu_s
        self.in_c = 0.0
        self.covered = 0.0
        self._clock = thread_time
        self._entered: float | None = None
        self._began: float | None = None

    @property
    def done(self) -> bool:
        """Its budget of events is spent, or it has seen enough CPU time: it installs no more."""
        return self.events_left <= 0 or self.covered >= self.cpu_s

    @property
    def share(self) -> float | None:
        """The share of the CPU time it saw that ran in C functions (None: it saw none)."""
        return self.in_c / self.covered if self.covered > 0 else None

    def reset(self) -> None:
        """Forget what it read, and restore its budget (the batch it saw was not timed: an import, say)."""
        self.events_left, self.in_c, self.covered = self.budget, 0.0, 0.0

    def __enter__(self) -> CShare:
        if not self.done and sys.getprofile() is None:
            self._began = self._clock()
            sys.setprofile(self._hook)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._began is not None:
            if sys.getprofile() == self._hook:  # an item may have set its own profiler: it stays
                sys.setprofile(None)
            self._stop()

    def _hook(self, frame: FrameType, event: str, arg: object) -> None:
        self.events_left -= 1
        if event == "c_call":
            self._entered = self._clock()
        elif self._entered is not None and event in _C_ENDS:
            self.in_c += self._clock() - self._entered
            self._entered = None
        if self.events_left <= 0:
            sys.setprofile(None)
            self._stop()

    def _stop(self) -> None:
        now = self._clock()
        if self._entered is not None:
            self.in_c += now - self._entered
            self._entered = None
        if self._began is not None:
            self.covered += now - self._began
            self._began = None


def c_cpu_share(
    func: Callable[[Any], Any],
    source: Iterator[Any],
    count: int,
    capture_errors: bool,
    results: list[Any],
    thread_time: Callable[[], float] = time.thread_time,
) -> tuple[float | None, bool]:
    """Run the next ``count`` items of ``source`` under a profiler, keeping their results in ``results``.

    Returns the share of their CPU time spent in C functions (None if nothing ran,
    the items took no measurable CPU time, or a profiler is already set: the user's
    is never replaced), and whether the input ended: it ran out, or an item raised
    (without ``capture_errors``; its ``Failure`` is then the last result, as in the serial sample).
    """
    if sys.getprofile() is not None:
        return None, False
    batch = list(itertools.islice(source, count))
    if not batch:
        return None, True
    meter = CShare(thread_time=thread_time)
    with meter:
        failed = run_kept(func, batch, results, capture_errors)
    if failed:
        return None, True
    return meter.share, len(batch) < count
