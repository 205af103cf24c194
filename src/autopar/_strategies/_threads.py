"""The threads strategy: a pool of daemon threads fed through a queue.

Data flow::

    caller --submit--> tasks (queue.Queue) --> worker threads --> done (queue.Queue) --poll--> caller

Threads share the interpreter, so nothing is pickled; under the GIL only code
that releases it (C extensions, I/O) runs in parallel.  Each chunk runs in a
copy of the submitting caller's ``contextvars`` context (as ``asyncio.to_thread``
runs its function), so ``autopar.config()`` scopes and the caller's other
context variables are seen by the items on every build, whether or not new
threads inherit their starter's context (free-threaded builds do by default).

Warning: a thread cannot be killed.  When a call times out, is interrupted or
cancelled, its running items go on until they return; the pool is retired
(never reused) and its threads, daemons, exit once their item finishes.  The
caller is never blocked on them: a retired pool's shutdown joins no thread.
"""

from __future__ import annotations

import contextvars
import errno
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .._limits import start_error
from .._worker import ChunkFailed, ItemClock, run_chunk

if TYPE_CHECKING:
    from .._model import PlatformFacts, PoolSpec
    from .._recorder import Recorder
    from .._types import Outcome

__all__ = ["QueuedPool", "ThreadPool", "ThreadStrategy"]

#: (task id, function, items, index of the first, capture errors, the submitting caller's context).
_Task = tuple[int, Callable[[Any], Any], Sequence[Any], int, bool, contextvars.Context]
#: Seconds ``shutdown`` waits, for all threads together, for idle threads to exit.
_JOIN_S = 0.5


class QueuedPool:
    """What a pool fed through a task queue and drained through a done queue does the same way.

    Subclasses set ``_tasks``, ``_done`` (outcomes tagged with the generation that
    submitted them), ``_generation``, ``_pending``, ``_retired`` and ``_init_error``.
    """

    _tasks: queue.SimpleQueue[Any]
    _done: queue.SimpleQueue[tuple[int, Outcome]]
    _generation: int
    _pending: int
    _retired: bool
    _init_error: BaseException | None
    #: Fed with each task's timing while a call is recorded (``record``).
    recorder: Recorder | None = None

    def record(self, recorder: Recorder | None) -> None:
        self.recorder = recorder

    def poll(self, timeout: float | None) -> list[Outcome]:
        outcomes: list[Outcome] = []
        try:
            item = self._done.get(timeout=timeout)
            while True:
                generation, outcome = item
                if generation == self._generation:
                    self._pending -= 1
                    outcomes.append(outcome)
                item = self._done.get_nowait()
        except queue.Empty:
            pass
        return outcomes

    def cancel(self) -> None:
        # Queued tasks are dropped; running ones cannot be stopped, so the pool retires.
        self._generation += 1
        self._pending = 0
        try:
            while True:
                self._tasks.get_nowait()
        except queue.Empty:
            pass
        self._retired = True

    def is_reusable(self) -> bool:
        return not self._retired and self._init_error is None


class ThreadPool(QueuedPool):
    """``workers`` daemon threads running chunks; outcomes of cancelled tasks are dropped."""

    def __init__(self, workers: int, spec: PoolSpec) -> None:
        self.workers = workers
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._done = queue.SimpleQueue()
        self._generation = 0
        self._pending = 0
        self._retired = False
        self._init_error: BaseException | None = None
        #: Per thread: when it was created, began running and finished its initializer (for a report).
        self._starts = [[time.perf_counter()] * 3 for _ in range(workers)]
        self._threads = [
            threading.Thread(target=self._run, args=(spec, i), name=f"autopar-thread-{i}", daemon=True)
            for i in range(workers)
        ]
        for started, thread in enumerate(self._threads):
            try:
                thread.start()
            except RuntimeError as exc:  # "can't start new thread": a process or thread limit
                del self._threads[started:]
                self.shutdown()
                raise start_error(ThreadStrategy.name, exc, errno.EAGAIN) from exc

    def _run(self, spec: PoolSpec, number: int) -> None:
        self._starts[number][1] = time.perf_counter()
        if spec.initializer is not None:
            try:
                spec.initializer(*spec.initargs)
            except BaseException as exc:  # SystemExit too: a thread that died here would leave its tasks unrun
                self._init_error = exc
        self._starts[number][2] = time.perf_counter()
        while True:
            task = self._tasks.get()
            if task is None:
                return
            task_id, func, items, start, capture_errors, context = task
            generation, recorder = self._generation, self.recorder
            clock = None if recorder is None else ItemClock(func, start)
            if self._init_error is not None:
                outcome: Outcome = (task_id, None, self._init_error)
            else:
                try:
                    current = self._while_current(items, generation)
                    results = context.run(
                        run_chunk, clock or func, current, start, capture_errors=capture_errors, in_process=False
                    )
                except ChunkFailed as failed:
                    outcome = (task_id, failed.results, failed.wrapped.rebuild())
                except BaseException as exc:  # SystemExit or KeyboardInterrupt raised by func
                    # Not an item's result: the dispatch loop ends the call with it, in the caller.
                    outcome = (task_id, None, exc)
                else:
                    outcome = (task_id, results, None)
            if clock is not None and recorder is not None:
                recorder.ran(f"worker {number}", start, clock.timing(start), failed=outcome[2] is not None)
            self._done.put((generation, outcome))

    def _while_current(self, items: Sequence[Any], generation: int) -> Iterator[Any]:
        """``items`` until the pool is cancelled: an abandoned thread stops after its running item."""
        for item in items:
            if self._generation != generation:
                return
            yield item

    def record(self, recorder: Recorder | None) -> None:
        if recorder is None and self.recorder is not None:
            for number, (created, began, ready) in enumerate(self._starts):
                self.recorder.worker(f"worker {number}", created, began, ready)
        self.recorder = recorder

    def capacity(self) -> int:
        return max(self.workers * 2 - self._pending, 0)

    def submit(
        self, task_id: int, func: Callable[[Any], Any], items: Sequence[Any], start: int, capture_errors: bool
    ) -> None:
        self._pending += 1
        # Each chunk runs in a copy of the caller's context, as asyncio.to_thread does: config() scopes and
        # other context variables set around the call are seen by its items on every build.
        self._tasks.put((task_id, func, items, start, capture_errors, contextvars.copy_context()))

    def shutdown(self) -> None:
        abandoned = self._retired  # cancelled: its threads may still run items nobody waits for
        self._retired = True
        for _ in self._threads:
            self._tasks.put(None)
        if abandoned:
            return  # each exits after its item; joining would make Ctrl-C wait for the slowest
        # Idle threads exit at once; a thread stuck in user code is a daemon and is left to finish.
        deadline = time.monotonic() + _JOIN_S
        for thread in self._threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0))

    def retire(self) -> None:
        """Shut down without waiting: each idle thread exits once it reads its sentinel (an evicted idle pool)."""
        self._retired = True
        for _ in self._threads:
            self._tasks.put(None)

    def alive_threads(self) -> int:
        """How many of the pool's threads are still running."""
        return sum(t.is_alive() for t in self._threads)


class ThreadStrategy:
    """Run chunks on threads of this process."""

    name = "threads"
    uses_processes = False

    def create_pool(self, workers: int, facts: PlatformFacts, spec: PoolSpec) -> ThreadPool:
        return ThreadPool(workers, spec)
