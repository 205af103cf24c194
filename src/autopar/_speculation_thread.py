"""The first items of a first call in forkserver or spawn workers, started from a thread while the caller measures.

A forkserver or spawn pool takes 50-300 ms to boot, too long to start in the
caller before it knows whether the call needs processes.  ``BackgroundSpeculation``
starts it from a thread, and only once calibration has run ``plan.after_s``
(short work never pays for it).  That thread hands the first items to the
workers once they have booted; an item not handed over when calibration ends is
taken back and runs in the caller, so a decision against processes never waits
for workers to boot::

    thread: wait after_s (calibration over: stop) -> acquire pool (workers boot)
            -> under the lock, submit each first item the caller has not claimed
    caller: calibrate; collect(): claim the rest, run them here, poll the submitted
            take(): join the thread, the pool serves the call; release(): the thread gives it back

``_speculation`` holds the fork variant, started in the caller, and chooses between them.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from . import _pools
from ._errors import SerializationError, WorkerCrashedError, WorkerStartError
from ._feeder import Handover, fits_blind
from ._pool_spec import is_single_use
from ._worker import Failure, run_chunk

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._core._plans import Speculate
    from ._model import Measurements, PlatformFacts, PoolSpec
    from ._recorder import Recorder
    from ._types import Pool

__all__ = ["BackgroundSpeculation", "grown", "poll_into"]

logger = logging.getLogger("autopar")


def poll_into(pool: Pool, slots: list[Any], count: int, check_deadline: Callable[[], float | None]) -> bool:
    """Fill ``slots[:count]`` with the results of tasks ``0..count-1``; False if a worker crashed."""
    healthy = True
    missing = set(range(count))
    while missing:
        for task_id, results, error in pool.poll(check_deadline()):
            missing.discard(task_id)
            if results:
                slots[task_id] = results[0]
            else:
                slots[task_id] = Failure(error)
                healthy = healthy and not isinstance(error, WorkerCrashedError)
    return healthy


#: The GIL switch interval while the thread starts a pool: CPython's 5 ms default would make it wait
#: that long for the GIL after each of the few dozen system calls a start makes, while the caller computes.
_STARTING_SWITCH_INTERVAL_S = 0.0002


@contextlib.contextmanager
def _prompt_gil() -> Iterator[None]:
    """A short GIL switch interval meanwhile; the caller's own setting comes back, unless it changed it since."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, _STARTING_SWITCH_INTERVAL_S))
    ours = sys.getswitchinterval()
    try:
        yield
    finally:
        if sys.getswitchinterval() == ours:
            sys.setswitchinterval(before)


def grown(pool: Pool, workers: int) -> bool:
    """Whether ``pool`` grew to ``workers`` (a limit may stop it: the call then decides without it)."""
    try:
        _pools.grow(pool, workers)
    except WorkerStartError as exc:
        logger.debug("autopar: could not add workers to the early pool: %s", exc)
        return False
    return True


class BackgroundSpeculation:
    """A pool of a slow start method, started by a thread during calibration and fed once booted."""

    def __init__(self, plan: Speculate, spec: PoolSpec, facts: PlatformFacts) -> None:
        self.plan = plan
        self.spec = spec
        self.facts = facts
        #: The pool, once the call took it (``take``); the thread's pool until then is ``_pool``.
        self.pool: Pool | None = None
        #: The first items set aside for the workers: each one's result comes from ``collect``.
        self.sent = 0
        #: The thread began starting the pool (calibration outlasted ``plan.after_s``).
        self.started = False
        self._items: list[Any] = []
        self._func: Callable[[Any], Any] | None = None
        self._capture_errors = False
        self._lock = threading.Lock()
        self._calibrated = threading.Event()
        # Under the lock: the thread's pool, the items it submitted, and whether the caller took the rest.
        self._pool: Pool | None = None
        self._given = 0
        self._given_at = 0.0  # when the booted workers got them
        self._claimed = False
        self._orphaned = False
        self._recorder: Recorder | None = None
        self._report_to: Recorder | None = None  # the call's, kept after ``record(None)``
        self._healthy = True
        self._unsendable = False  # an item could not be pickled: the caller runs it and those after it
        self._reusable = not is_single_use(spec)
        self._thread = threading.Thread(target=self._feed, name="autopar-speculation", daemon=True)

    def start(self, func: Callable[[Any], Any], source: Iterator[Any], capture_errors: bool) -> Iterator[Any]:
        """Set the first items aside for the workers and start the thread; return the rest of ``source``."""
        head = list(itertools.islice(source, self.plan.items))
        keep = next((i for i, item in enumerate(head) if not fits_blind(item)), len(head))
        self._items, self.sent = head[:keep], keep
        self._func, self._capture_errors = func, capture_errors
        try:
            self._thread.start()
        except RuntimeError as exc:  # no thread can start (RLIMIT_NPROC): the caller runs the first items
            logger.debug("autopar: no thread to start workers during calibration: %s", exc)
            self._calibrated.set()
            return itertools.chain(head[keep:], source)
        _pools.add_starter(self._thread)
        return itertools.chain(head[keep:], source)

    def _feed(self) -> None:
        if self._calibrated.wait(self.plan.after_s):
            return  # short work: no pool
        self.started = True
        plan = self.plan
        try:
            with _prompt_gil():
                pool = _pools.acquire(plan.method, plan.workers, self.spec, self.facts)  # waits for the workers to boot
        except Exception as exc:  # WorkerStartError, or an OSError of the platform: the caller runs the items
            logger.debug("autopar: no %s workers during calibration: %s", plan.method, exc)
            return
        with self._lock:
            if self._orphaned:
                orphan = True
            else:
                orphan, self._pool = False, pool
                if self._recorder is not None:
                    pool.record(self._recorder)
                self._submit(pool)
        if orphan:
            _pools.release(pool, healthy=self._healthy and self._reusable)

    def _submit(self, pool: Pool) -> None:
        """Under the lock: hand the first items the caller has not claimed to the booted workers."""
        assert self._func is not None
        while not self._claimed and self._given < self.sent:
            position = self._given
            try:
                pool.submit(position, self._func, [self._items[position]], position, self._capture_errors)
            except SerializationError:
                self._unsendable = True
                return  # the caller runs it and the rest
            self._given += 1
            self._given_at = time.perf_counter()

    def collect(self, check_deadline: Callable[[], float | None]) -> dict[int, Any]:
        """The first items' results, by input position: those not yet handed to a worker run here, now."""
        assert self._func is not None
        self._calibrated.set()
        with self._lock:
            self._claimed = True
            given, pool = self._given, self._pool
        slots: list[Any] = [None] * self.sent
        for position in range(given, self.sent):
            item = self._items[position]
            slots[position] = run_chunk(self._func, [item], position, capture_errors=True, in_process=False)[0]
        if given:
            assert pool is not None
            self._healthy = poll_into(pool, slots, given, check_deadline) and self._healthy
        self._items = []
        return dict(enumerate(slots))

    @property
    def in_workers(self) -> int:
        """How many first items the workers ran (the others ran in the caller)."""
        return self._given

    #: The workers take no items beyond the first ones.
    topped = 0

    @property
    def sent_first(self) -> int:
        """How many first items were set aside for the workers."""
        return self.sent

    def out_ages(self) -> tuple[float, ...]:
        """Seconds since each first item was handed to a booted worker."""
        with self._lock:
            given, at = self._given, self._given_at
        return (time.perf_counter() - at,) * given if given else ()

    @property
    def workers(self) -> int:
        """The pool's workers, as planned (it grows only for a decision of it)."""
        return self.plan.workers

    def sampled(self, m: Measurements, c_share: float | None) -> Measurements:
        """``m`` as it is: the workers get the first items only."""
        return m

    def blocked(self) -> None:
        """Nothing: the workers, still booting, get the first items only."""

    def record(self, recorder: Recorder | None) -> None:
        """Feed the workers' timings to ``recorder`` (``report=True``) once the pool is up, or stop (None)."""
        with self._lock:
            self._recorder = recorder
            self._report_to = recorder or self._report_to
            if self._pool is not None:
                self._pool.record(recorder)

    def warm(self, pools: frozenset[tuple[str, int]]) -> frozenset[tuple[str, int]]:
        """``pools`` with this one if the thread began starting it: its start-up is (being) paid already."""
        return pools | {(self.plan.method, self.plan.workers)} if self.started else pools

    def hand_over(self, method: str, workers: int) -> Handover | None:
        """For a decision of this pool: the pool once booted (grown to ``workers``), with the first items; else None.

        The items not yet sent then wait for the workers instead of running in the caller.
        """
        if method != self.plan.method or workers < self.plan.workers or not self._healthy:
            return None
        self._calibrated.set()
        with self._lock:
            self._claimed = True  # the thread sends nothing more
        if self._thread.ident is not None:
            self._thread.join()
        with self._lock:
            pool, given = self._pool, self._given
            if pool is None or self._unsendable:
                return None  # ``collect`` runs the items not sent
            if workers > pool.workers and not grown(pool, workers):
                self._healthy = False
                return None
            self._pool = None
        items, self._items = self._items, []
        indexed = list(enumerate(items))
        return Handover(pool, self.spec, indexed[:given], indexed[given:])

    def take(self, method: str, workers: int) -> tuple[Pool, PoolSpec] | None:
        """The pool and its spec for a decision of ``method`` with ``workers`` (waiting for it to boot); else None."""
        if (method, workers) != (self.plan.method, self.plan.workers) or not self._healthy:
            if self._report_to is not None and self._given:
                self._report_to.set_aside()  # its workers' rows must not merge with the next pool's
            self.release()
            return None
        if self._thread.ident is not None:
            self._thread.join()
        with self._lock:
            pool, self._pool = self._pool, None
        return None if pool is None else (pool, self.spec)

    def _detach(self) -> Pool | None:
        """Stop the thread from starting anything more; its pool if it has one (else it releases it itself)."""
        self._calibrated.set()
        with self._lock:
            self._claimed = True
            pool, self._pool = self._pool, None
            self._orphaned = pool is None
        return pool

    def abandon(self) -> None:
        """Stop what the workers run and shut the pool down (a timeout, Ctrl-C, an error in the caller)."""
        self._healthy = False
        pool = self._detach()
        if pool is not None:
            pool.cancel()
            _pools.release(pool, healthy=False)

    def release(self) -> None:
        """Give the pool back for later calls, if the call did not use it (one still booting, once booted)."""
        pool = self._detach()
        if pool is not None:
            _pools.release(pool, healthy=self._healthy and self._reusable)
