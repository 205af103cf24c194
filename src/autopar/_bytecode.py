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

Before Python 3.12 a profiler slows every bytecode instruction, and a loop that
calls nothing would never give it a chance to leave: there the sample's meter is
``TracedShare``, which also takes line events and leaves after ``cpu_s`` of CPU
time, and reports the time its tracing added (``slowed_s``) for the sample to
take out of its timings.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from typing import TYPE_CHECKING, Any

from ._core._sampling import CHEAP_PROFILER_SINCE
from ._sample import run_kept

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType, TracebackType

__all__ = ["CShare", "TracedShare", "c_cpu_share", "sample_meter"]

#: Profiler events that end a C function's span: its return, its exception, or a call back into Python.
_C_ENDS = frozenset({"c_return", "c_exception", "call"})


class CShare:
    """The calling thread's CPU time in C functions over its CPU time, while installed (``with meter:``).

    Installed around batches of items, never between them, for at most ``events``
    profiler events and until it has seen ``cpu_s`` of CPU time; a profiler set
    by someone else is never replaced (the meter then reads nothing).  A C call
    that took less than a quarter of its wall time in CPU blocked (a sleep, a read):
    its CPU time is the kernel's bookkeeping, not computing, and counts on neither side.
    """

    def __init__(
        self,
        events: float = math.inf,
        cpu_s: float = math.inf,
        thread_time: Callable[[], float] = time.thread_time,
        wall_time: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.budget = events
        self.events_left = events
        self.cpu_s = cpu_s
        self.in_c = 0.0
        self.covered = 0.0
        #: CPU time in C calls that blocked, left out of ``in_c`` and of the CPU time seen.
        self.blocked = 0.0
        #: Seconds of CPU time the meter added to what it watched (its own hooks' time; ``TracedShare``).
        self.slowed_s = 0.0
        self._clock = thread_time
        self._wall = wall_time
        self._entered: tuple[float, float] | None = None
        self._began: float | None = None

    @property
    def done(self) -> bool:
        """Its budget of events is spent, or it has seen enough CPU time: it installs no more."""
        return self.events_left <= 0 or self.covered - self.blocked >= self.cpu_s

    @property
    def share(self) -> float | None:
        """The share of the CPU time it saw computing that ran in C functions (None: it saw none)."""
        seen = self.covered - self.blocked
        return min(self.in_c / seen, 1.0) if seen > 0 else None

    def reset(self) -> None:
        """Forget what it read, and restore its budget (the batch it saw was not timed: an import, say)."""
        self.events_left, self.in_c, self.covered, self.blocked = self.budget, 0.0, 0.0, 0.0

    def __enter__(self) -> CShare:
        if not self.done and sys.getprofile() is None:
            self._began = self._clock()
            sys.setprofile(self._hook)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._began is not None:
            self._leave(None)

    def _leave(self, frame: FrameType | None) -> None:
        """Remove its hooks and stop reading; what runs from now on (the removal) is not the items'."""
        kept = (self.in_c, self.blocked, self._entered)
        now = self._clock()
        self._unhook(frame)  # its own calls (the clock, sys.getprofile) would read as C
        self.in_c, self.blocked, self._entered = kept
        self._stop(now)

    def _unhook(self, frame: FrameType | None) -> None:
        if sys.getprofile() == self._hook:  # an item may have set its own profiler: it stays
            sys.setprofile(None)

    def _hook(self, frame: FrameType, event: str, arg: object) -> None:
        self.events_left -= 1
        if event == "c_call":
            self._entered = (self._clock(), self._wall())
        elif self._entered is not None and event in _C_ENDS:
            self._left_c(self._clock())
        if self.events_left <= 0:
            self._leave(frame)

    def _left_c(self, now: float) -> None:
        assert self._entered is not None
        cpu, wall = max(now - self._entered[0], 0.0), self._wall() - self._entered[1]
        if 4 * cpu < wall:
            self.blocked += cpu
        else:
            self.in_c += cpu
        self._entered = None

    def _stop(self, now: float) -> None:
        if self._entered is not None:
            self._left_c(now)
        if self._began is not None:
            self.covered += now - self._began
            self._began = None


class TracedShare(CShare):
    """``CShare`` that also leaves a loop which calls nothing, for interpreters whose profiler slows all bytecode.

    Before Python 3.12 an installed profiler sends every bytecode instruction
    down the interpreter's slow path.  Line events (``sys.settrace``) read the
    clock every ``LINES_PER_CHECK`` lines, and both hooks leave once the meter
    has seen ``cpu_s`` of CPU time, or at the end of the one batch it watches.
    Traced bytecode runs about 18 times slower (3.11, a countdown loop), so
    nearly all the CPU time the meter saw outside C functions is its own:
    ``slowed_s`` adds it up, at most ``cpu_s`` a batch.  A tracer set by someone
    else (a debugger, coverage) is never replaced.
    """

    #: Line events between two readings of the clock.
    LINES_PER_CHECK = 32

    # Per-meter counters, from these starting values (CShare's constructor serves).
    _lines = 0
    _watched = 0  # batches it was installed for
    _untraced = 0.0  # C functions' CPU time seen before this window: they run at full speed

    @property
    def done(self) -> bool:
        """``CShare.done``, or it watched a batch: the sample's first (one item) stands for the rest.

        Later batches of tiny items would pay for it many times over what they run.
        """
        return super().done or self._watched > 0

    def reset(self) -> None:
        super().reset()
        self._watched = 0

    def __enter__(self) -> CShare:
        if not self.done and sys.getprofile() is None and sys.gettrace() is None:
            self._watched += 1
            self._untraced = self.in_c + self.blocked
            self._began = self._clock()
            sys.settrace(self._trace)
            sys.setprofile(self._hook)
        return self

    def _trace(self, frame: FrameType, event: str, arg: object) -> Callable[..., Any] | None:
        if self._began is None:  # a frame it traced, run again once it left (a generator): trace it no more
            frame.f_trace = None
            return None
        self._lines += 1
        if self._lines % self.LINES_PER_CHECK:
            return self._trace
        if self.covered - self.blocked + self._clock() - self._began >= self.cpu_s:
            self._leave(frame)
            return None
        return self._trace

    def _unhook(self, frame: FrameType | None) -> None:
        if sys.gettrace() == self._trace:
            sys.settrace(None)
        while frame is not None:  # the frames it traced would call it on their next line
            if frame.f_trace == self._trace:
                frame.f_trace = None
            frame = frame.f_back
        super()._unhook(None)

    def _stop(self, now: float) -> None:
        if self._began is None:
            return
        window = now - self._began
        super()._stop(now)
        traced = window - (self.in_c + self.blocked - self._untraced)
        # It leaves within a few lines of its budget: it never added more than that.
        self.slowed_s += min(max(traced, 0.0), self.cpu_s)


def sample_meter(
    events: float,
    cpu_s: float,
    thread_time: Callable[[], float] = time.thread_time,
    wall_time: Callable[[], float] = time.perf_counter,
) -> CShare:
    """The meter for the serial sample on this interpreter: ``CShare`` from 3.12, ``TracedShare`` before."""
    cheap = sys.version_info >= CHEAP_PROFILER_SINCE
    return (CShare if cheap else TracedShare)(events, cpu_s, thread_time, wall_time)


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
