"""A thread that drives one autopar pool for the joblib backend, and reports each batch through a future.

autopar's pools are driven by the thread that uses them (``_types.Pool``); joblib
expects its backend to call back when a batch is done, from a thread of its own
(joblib's caller waits in its retrieval loop meanwhile).  ``PoolDriver`` is that
thread::

    joblib (caller or callback) --put(batch, future)--> inbox (deque, lock)
    driver thread: inbox --submit--> pool (threads or process workers) --poll--> outcome
                   outcome --> on_done(timing) --> future.set_result / set_exception --> joblib's callback
                   joblib's callback dispatches the next batch: put(), on this same thread

The driver owns its pool from start to end: only its thread submits, polls,
cancels and gives the pool back (``_pools.release``), so the pool never sees two
threads.  After a failed batch it submits nothing more; ``stop`` (an abort, Ctrl-C, a
timeout) cancels running batches, so process workers running them are terminated.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import threading
from typing import TYPE_CHECKING, Any

import attrs

from . import _pools
from ._core._joblib import joblib_decision
from ._core._safety import PROCESS_METHODS, with_start_failure
from ._errors import WorkerStartError
from ._joblib_batch import run_batch
from ._pool_spec import is_single_use, pool_spec
from ._serialize import shipping

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future

    from ._core._joblib import JoblibRequest
    from ._model import Decision, Measurements, Options, PlatformFacts
    from ._types import Pool

__all__ = ["PoolDriver", "start_decided", "start_driver"]

logger = logging.getLogger("autopar")

#: Seconds between checks of the inbox while batches run (batches put from joblib's caller wait at most this).
_POLL_S = 0.005
#: Seconds ``stop`` waits for the driver thread (a deadlock guard: it checks its stop flag every ``_POLL_S``).
_JOIN_S = 30.0
#: Start methods that fail to start are left out and the decision taken again, at most this many times.
_START_ATTEMPTS = 3


class PoolDriver:
    """Runs joblib batches on ``pool`` from a thread of its own; ``put`` hands it a batch and its future."""

    def __init__(
        self,
        pool: Pool | None,
        *,
        single_use: bool,
        on_done: Callable[[int, float, float], None] | None = None,
        acquire: Callable[[], Pool] | None = None,
    ) -> None:
        """Start the driver thread; ``on_done(tasks, wall_s, cpu_s)`` hears of each batch that finished well.

        Without ``pool``, the driver thread gets it from ``acquire``, so the caller does not wait
        for its workers to start (a speculative pool); a failure to start fails every batch.
        """
        self.pool = pool
        self._acquire = acquire
        self._single_use = single_use
        self._on_done = on_done
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._inbox: collections.deque[tuple[int, Any, Future[Any]]] = collections.deque()
        self._running: dict[int, tuple[int, Future[Any]]] = {}
        self._stopping = False
        self._retiring = False
        self._failed = False
        self._thread = threading.Thread(target=self._loop, name="autopar-joblib-driver", daemon=True)
        self._thread.start()

    def put(self, task_id: int, batch: Any, future: Future[Any]) -> None:
        """Queue ``batch`` (input position ``task_id``); its outcome goes to ``future``."""
        with self._lock:
            self._inbox.append((task_id, batch, future))
        self._wake.set()

    def retire(self) -> None:
        """Let the driver end, and give its pool back, once its queued and running batches are done."""
        self._retiring = True
        self._wake.set()

    def stop(self, *, wait: bool = True) -> None:
        """End the driver now: running batches are cancelled (their process workers terminated); ``wait`` for it."""
        self._stopping = True
        self._wake.set()
        if wait and self._thread is not threading.current_thread():
            self._thread.join(timeout=_JOIN_S)

    def join(self) -> None:
        """Wait until the driver ended (after ``retire`` or ``stop``)."""
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=_JOIN_S)

    def _loop(self) -> None:
        healthy = True
        try:
            pool = self.pool = self.pool if self._acquire is None else self._acquire()
            assert pool is not None
            while not self._stopping:
                self._submit_ready()
                if not self._running:
                    if self._idle_until_woken():
                        break
                    continue
                for task_id, results, exc in pool.poll(_POLL_S):
                    self._finish(task_id, results, exc)
        except BaseException as exc:  # the pool itself failed (a worker start, a crash while replacing one)
            healthy = False
            self._fail_all(exc)
        finally:
            if self.pool is not None:
                if self._running or self._inbox:
                    self.pool.cancel()
                    healthy = False
                _pools.release(self.pool, healthy=healthy and not self._failed and not self._single_use)

    def _idle_until_woken(self) -> bool:
        """Wait for a batch; True when the driver should end instead (retired or stopped with nothing left)."""
        with self._lock:
            if self._inbox:
                return False
            if self._retiring or self._failed:
                return True
            self._wake.clear()
        self._wake.wait()
        return False

    def _submit_ready(self) -> None:
        assert self.pool is not None
        while not self._failed and self.pool.capacity() > 0:
            with self._lock:
                if not self._inbox:
                    return
                task_id, batch, future = self._inbox.popleft()
            try:
                self.pool.submit(task_id, run_batch, [batch], task_id, False)
            except Exception as exc:  # the batch does not pickle: it fails alone, the call aborts
                self._failed = True
                future.set_exception(exc)
                return
            self._running[task_id] = (len(batch), future)

    def _finish(self, task_id: int, results: list[Any] | None, exc: BaseException | None) -> None:
        size, future = self._running.pop(task_id)
        if exc is not None or results is None:
            # joblib aborts the call on the first failure: no batch starts after it.
            self._failed = True
            with self._lock:
                self._inbox.clear()
            future.set_exception(exc if exc is not None else RuntimeError("a batch returned no result"))
            return
        values, wall_s, cpu_s = results[0]
        if self._on_done is not None:
            self._on_done(size, wall_s, cpu_s)
        future.set_result(values)

    def _fail_all(self, exc: BaseException) -> None:
        self._failed = True
        with self._lock:
            queued = [future for _, _, future in self._inbox]
            self._inbox.clear()
        futures = [future for _, future in self._running.values()] + queued
        self._running.clear()
        for future in futures:
            with contextlib.suppress(Exception):  # already set (a race with a result): nothing to report
                future.set_exception(exc)


def start_driver(
    decision: Decision,
    name: str,
    workers: int,
    options: Options,
    facts: PlatformFacts,
    inner_threads: int | None,
    *,
    on_done: Callable[[int, float, float], None] | None = None,
    background: bool = False,
) -> PoolDriver:
    """A driver over a pool of ``workers`` ``name`` workers, built as ``decision``'s pool is built.

    ``inner_threads`` (joblib's ``inner_max_num_threads``) replaces the native thread limit of process
    workers.  ``background`` starts the workers from the driver's thread: this returns at once.

    Raises:
        WorkerStartError: the pool's workers could not start (not raised with ``background``:
            its batches fail instead).
    """
    uses_processes = name in PROCESS_METHODS
    spec = pool_spec(
        attrs.evolve(decision, strategy=name, workers=workers),
        options,
        facts,
        uses_processes=uses_processes,
        ship=shipping(run_batch),
        call_func=run_batch,
        shared=None,
        cluster=None,
    )
    if uses_processes and inner_threads is not None:
        spec = attrs.evolve(spec, native_threads=inner_threads)
    if background:
        acquire = functools.partial(_pools.acquire, name, workers, spec, facts)
        return PoolDriver(None, single_use=is_single_use(spec), on_done=on_done, acquire=acquire)
    pool = _pools.acquire(name, workers, spec, facts)
    return PoolDriver(pool, single_use=is_single_use(spec), on_done=on_done)


def start_decided(
    decision: Decision,
    m: Measurements,
    facts: PlatformFacts,
    options: Options,
    request: JoblibRequest,
    inner_threads: int | None,
) -> tuple[PoolDriver, Decision, PlatformFacts]:
    """The driver of ``decision``'s pool; a start method whose workers fail to start is left out, and decided again.

    Serial, once the caller has gone back to joblib's wait, runs on one thread.  Returns the
    driver, the decision it runs and the facts with any start failure recorded.
    """
    for _ in range(_START_ATTEMPTS):
        name, workers = decision.strategy, decision.workers
        if name == "serial":
            name, workers = "threads", 1
        try:
            return start_driver(decision, name, workers, options, facts, inner_threads), decision, facts
        except WorkerStartError as exc:
            facts = with_start_failure(facts, name, exc)
            logger.warning("autopar: %s; deciding again", exc)
            decision = joblib_decision(m, facts, options, request)
    serial = attrs.evolve(decision, strategy="serial", workers=1)
    return start_driver(serial, "threads", 1, options, facts, inner_threads), serial, facts
