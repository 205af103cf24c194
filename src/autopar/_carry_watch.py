"""Starting the carry while the first item still runs: its waits, and the other CPU, are not left idle.

The serial sample's first item runs in the caller; for items that wait, then
compute in C code that releases the GIL, the carry's threads would only start
once it ends.  ``FirstItemWatch`` looks at the caller's CPU clock from a thread
of its own, about every millisecond, while that item runs::

    watcher: sleep 1 ms --> how late did it get the GIL back (twice in a row)?  did the item run, and block before?
             --> early_carry(...) says how many threads --> release the parked threads on the items after it

Once the item has blocked, ``blocked`` tells the first call's early process workers
(``_speculation``): an idle one takes the next item rather than wait for the sample.
``early_carry`` (the core's rule) stops the watch as soon as the item computes
from its start or runs Python bytecode under the GIL: processes, not threads,
overlap such items' waits, and the sample's own path decides.  The watcher ends
with the item, and is gone (to the OS too) before anything forks; a carry it
started is finished by the caller (``finish_carry``) or stopped if the item raised.
"""

from __future__ import annotations

import contextvars
import threading
import time
from typing import TYPE_CHECKING, Any

from ._core._sizing import MAX_THREADS
from ._core._watching import early_carry, early_look_ran, early_park, gil_seen
from ._thread_carry import start_carry
from ._thread_probe import await_thread_gone

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType

    from ._calibrate import Clocks
    from ._model import PlatformFacts
    from ._thread_carry import Carrying

__all__ = ["FirstItemWatch", "caller_cpu_clock", "early_carrying", "watch_first"]

#: Seconds between the watcher's looks.
_LOOK_S = 0.001
#: Most seconds of the item the watcher looks on, once no carry starts, to tell whether its computing
#: releases the GIL (``gil_seen``: a look or two, 5 ms when bytecode holds the GIL).
_GIL_LOOKS_S = 0.012


def caller_cpu_clock() -> Callable[[], float] | None:
    """A reader of the calling thread's CPU clock that works from any thread; None where there is none."""
    try:
        clock = time.pthread_getcpuclockid(threading.get_ident())
        time.clock_gettime(clock)
    except (AttributeError, OSError):  # not a POSIX thread clock here (Windows, macOS)
        return None
    return lambda: time.clock_gettime(clock)


class FirstItemWatch:
    """While the caller runs its first item (``with watch.at(position):``), start the carry once ``early_carry`` says."""

    def __init__(
        self,
        func: Callable[[Any], Any],
        source: Iterator[Any],
        remaining: int | None,
        capture_errors: bool,
        clocks: Clocks,
        cpu_clock: Callable[[], float],
        blocked: Callable[[], object] | None = None,
    ) -> None:
        self._func, self._source, self._remaining = func, source, remaining
        self._capture, self._clocks, self._cpu = capture_errors, clocks, cpu_clock
        self._blocked = blocked  # called once the item blocks; what it raises, the caller raises at the item's end
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._first = 0
        self._thread: threading.Thread | None = None
        #: The carry the watcher started, if it did, and its threads started, not yet released.
        self.carrying: Carrying | None = None
        #: Whether the item's computing released the GIL at the watcher's looks (``gil_seen``); None: not seen.
        self.gil: bool | None = None
        self._parked: Carrying | None = None

    def at(self, first: int) -> FirstItemWatch:
        """Watch the item about to run; the carry's first item is input position ``first``, the one after it."""
        self._first = first
        return self

    def __enter__(self) -> FirstItemWatch:
        context = contextvars.copy_context()  # the carry's threads see the caller's config(), as on a thread pool
        thread = threading.Thread(target=context.run, args=(self._watch,), name="autopar-watch", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # "can't start new thread": a process or thread limit; the item runs unwatched
            return self
        self._thread = thread
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        with self._lock:
            self._done.set()
        if self._thread is not None:
            self._thread.join()
            await_thread_gone(self._thread.native_id, self._clocks)  # before anything forks
        if exc is not None and self.carrying is not None:
            self.carrying.stop()  # a timeout or Ctrl-C: the carry's threads end after their item
        if self._error is not None and exc is None:
            raise self._error

    def _watch(self) -> None:
        cpu, wall, queued = self._cpu, time.perf_counter, self._clocks.queued
        w0 = wall()
        c0 = last = cpu()
        prompt = 0  # looks in a row at which the item had run and the GIL came promptly
        stopped = False  # no carry: the watch goes on only until it knows the GIL (``gil``)
        try:
            while True:
                asleep, q0 = wall(), queued()
                if self._done.wait(_LOOK_S):
                    return
                woke, now, q1 = wall(), cpu(), queued()  # time queued for a CPU is no sign of the GIL
                late = woke - asleep - _LOOK_S - (0.0 if q0 is None or q1 is None else q1 - q0)
                late_s = late if early_look_ran(now - last, woke - asleep) else None
                self.gil = gil_seen(late_s, prompt) if self.gil is None else self.gil
                threads = None if stopped else early_carry(woke - w0, now - c0, late_s, self._remaining, prompt)
                prompt, last = (prompt + 1 if late_s is not None else 0), now
                if threads == 0 and self._parked is None and early_park(woke - w0, now - c0):
                    self._park()
                elif threads is not None and threads > 0:
                    self._start(threads)
                    return
                elif threads is None:
                    stopped = True
                    if self.gil is not None or woke - w0 > _GIL_LOOKS_S:
                        return
        finally:
            self._unpark()

    def _park(self) -> None:
        """Start the carry's threads waiting, while the item blocks: its first look at the GIL may release them."""
        with self._lock:
            if not self._done.is_set():
                self._tell_blocked()
                self._parked = self._waiting(min(self._remaining or 0, MAX_THREADS))

    def _tell_blocked(self) -> None:
        try:
            if self._blocked is not None:
                self._blocked()
        except BaseException as exc:  # raised in the caller: an item it read must not go unseen
            self._error = exc

    def _start(self, threads: int) -> None:
        with self._lock:
            if self._done.is_set():  # the item ended meanwhile: the sample's own path goes on
                return
            self.carrying, self._parked = self._parked or self._waiting(threads), None
            if self.carrying is not None:
                self.carrying.release(self._clocks)

    def _waiting(self, threads: int) -> Carrying | None:
        """The carry's threads, started waiting for ``Carrying.release``."""
        go = threading.Event()
        return start_carry(self._func, self._source, threads, self._first, self._capture, self._clocks, go=go)

    def _unpark(self) -> None:
        """Threads parked and not released end untaken, and are gone before anything forks."""
        parked, self._parked = self._parked, None
        if parked is not None:
            parked.abandon(self._clocks)


def watch_first(
    func: Callable[[Any], Any],
    stream: Iterator[Any],
    n_items: int | None,
    capture_errors: bool,
    clocks: Clocks,
    facts: PlatformFacts,
    *,
    allowed: bool,
    blocked: Callable[[], object] | None = None,
) -> FirstItemWatch | None:
    """The watch on the first item, where a carry may start early: allowed, more than one CPU, a thread CPU clock."""
    cpu = clocks.caller_cpu() if allowed and facts.cpu_count > 1 else None
    if cpu is None:
        return None
    return FirstItemWatch(func, stream, None if n_items is None else n_items - 1, capture_errors, clocks, cpu, blocked)


def early_carrying(watch: FirstItemWatch | None, exhausted: bool, clocks: Clocks) -> Carrying | None:
    """The carry the watch started, going on; one beside a first item that raised is stopped, its items dropped."""
    if watch is None or watch.carrying is None:
        return None
    if exhausted:
        watch.carrying.abandon(clocks)
        return None
    return watch.carrying
