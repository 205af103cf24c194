"""Process strategies: a pool of worker processes started by fork, forkserver or spawn.

Data flow (all driven by the calling thread; no helper thread, so a fork
replacement never races a thread of ours, and timeouts and Ctrl-C are seen
where they happen)::

    caller (ProcessPool)                         WorkerProcess i            child (process_main)
      start:  WorkerProcess(...) ----------------- Process.start ---------> runs the initializer
              wait(pipes + sentinels) <----------- pipe[i] <--------------- Init(error)
      submit: Func(blob), Task(...) -------------- pipe[i] --------------> run_chunk, or stream each item
      poll:   wait(pipes + sentinels, timeout) <-- pipe[i] <--------------- Ok | Err | ItemDone... TaskDone
              BatchReceiver or StreamReceiver reads them into one outcome per task
              sentinel[i] fired while busy ------> crash_outcome: WorkerCrashedError(index from slot[i])
              item ran past item_timeout --------> timeout_outcome: the worker is killed
      next submit: dead or recycled workers are replaced first

Each worker holds at most one task, so a crash is pinned to one chunk and the
shared ``slot`` names the item that was running.  ``cancel`` terminates the busy
workers.  The messages are drawn in ``_protocol``.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing.connection
import time
from typing import TYPE_CHECKING, Any

from ..._errors import SerializationError
from ..._main_module import process_context
from ..._serialize import pickle_function
from ._failures import timeout_outcome
from ._handle import WorkerProcess, await_ready, read_init, start_workers, stop_all
from ._protocol import Func, Task, encode
from ._receive import BatchReceiver, StreamReceiver, booted_s

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..._model import PlatformFacts, PoolSpec
    from ..._recorder import Recorder
    from ..._types import Outcome

__all__ = ["ProcessPool", "ProcessStrategy"]


class ProcessPool:
    """``workers`` processes of one start method, each running one task at a time."""

    #: Fed with each task's timing while a call is recorded (``record``).
    recorder: Recorder | None = None

    def __init__(self, method: str, workers: int, spec: PoolSpec, *, ready_later: bool = False) -> None:
        """Start ``workers`` workers and wait until each ran its initializer.

        ``ready_later`` (no initializer only) returns once the processes are started, without
        waiting for them to boot: tasks queue in their pipes, and each one's ``Init`` is read
        before its first result.
        """
        self.method = method
        self.workers = workers
        if spec.inherit is not None and method != "fork":
            msg = f"only fork workers can inherit a function, not {method} workers"
            raise ValueError(msg)
        # spawn and forkserver children never run the caller's ``__main__``.
        self._ctx = process_context(method)
        self._spec = spec
        self._receiver = StreamReceiver(method) if spec.stream else BatchReceiver(method)
        self._broken: BaseException | None = None
        self._done: list[Outcome] = []
        self._func_blob: tuple[object, bytes] | None = None
        self._workers: list[WorkerProcess] = []
        self._numbers = itertools.count()
        started = time.perf_counter()
        waits = not (ready_later and spec.initializer is None)
        try:
            self._start(workers, wait=waits)
        except BaseException:
            # A failed start, a timeout or Ctrl-C: no worker it started may outlive it.
            self._broken = RuntimeError("pool failed to start")
            stop_all(self._workers)
            self._workers = []
            raise
        #: Seconds until every worker was ready; None when the pool did not wait for them to boot.
        self.startup_s = time.perf_counter() - started if waits else None

    def booted_s(self) -> float | None:
        """The longest a worker took to boot, of those known ready (``_receive.booted_s``); never blocks."""
        return booted_s(self._workers, self.method)

    def grow(self, workers: int) -> None:
        """Start workers up to ``workers`` (without an initializer, they boot while the others work); WorkerStartError."""
        try:
            self._start(workers - len(self._workers), wait=self._spec.initializer is not None)
        finally:
            self.workers = len(self._workers)

    def _start(self, count: int, *, wait: bool) -> None:
        """Start ``count`` workers, numbered for a report; wait until they ran the initializer, or let them boot."""
        fresh = start_workers(self._ctx, self._spec, count, self._workers)
        for worker in fresh:
            worker.number = next(self._numbers)
            worker.awaiting_init = not wait
        if wait:
            self._await_ready(fresh)

    def _await_ready(self, workers: list[WorkerProcess]) -> None:
        error = await_ready(workers, self.method)
        if error is not None:
            # The initializer raised: fail the call with its exception, never respawn in a loop.
            self._broken = error
            raise error

    def _replace_dead(self) -> None:
        dead = [w for w in self._workers if w.stopped or not w.process.is_alive()]
        if not dead:
            return
        for worker in dead:
            if worker.task is not None:
                # It died holding a task: keep what it sent before dying, and report the
                # crash at the next poll, never drop it.
                held = worker.task
                self._done.append(self._drain_dead(worker))
                self._note(worker, held, self._done[-1])
            worker.stop(kill=True)
            self._tell(worker, ended=time.perf_counter())
            self._workers.remove(worker)
        try:
            self._start(len(dead), wait=True)
        except BaseException:
            self._broken = self._broken or RuntimeError("workers failed to start")
            raise

    # -- the Pool protocol ----------------------------------------------------

    def capacity(self) -> int:
        if self._broken is not None:
            return 0
        return sum(1 for w in self._workers if w.task is None)

    def _blob_for(self, func: Callable[[Any], Any]) -> tuple[object, bytes | None]:
        """A key naming ``func`` for the workers, and its ``Func`` message (None: fork workers inherit it)."""
        if self._spec.inherit is not None and func is self._spec.inherit:
            return ("inherit", self._spec.inherit_token), None
        if self._func_blob is None or self._func_blob[0] is not func:
            # Pickled once per pool and sent once per worker (``func_key``), not once per task.  Fork
            # workers inherit ``__main__``; spawn and forkserver workers never import it.
            blob = pickle_function(func, inherited_main=self.method == "fork")
            self._func_blob = (func, encode(Func(blob)))
        return func, self._func_blob[1]

    def submit(
        self, task_id: int, func: Callable[[Any], Any], items: Sequence[Any], start: int, capture_errors: bool
    ) -> None:
        self._replace_dead()
        key, func_blob = self._blob_for(func)
        try:
            timed = self.recorder is not None
            task_blob = encode(Task(task_id, list(items), start, self._receiver.mode(capture_errors), timed))
        except Exception as exc:
            msg = f"an item of input positions {start}..{start + len(items) - 1} could not be pickled to send to a {self.method} worker: {exc!r}"
            raise SerializationError(msg) from exc
        worker = next(w for w in self._workers if w.task is None)
        if worker.func_key is not key and func_blob is not None:
            with contextlib.suppress(OSError):  # a dead worker is reported by its sentinel
                worker.conn.send_bytes(func_blob)
            worker.func_key = key
        worker.begin(task_id, start, len(items))
        if timed:
            worker.recording, worker.timing, worker.bytes_out = True, None, 0
            worker.sent_at, worker.bytes_in = time.perf_counter(), len(task_blob)
        with contextlib.suppress(OSError):  # a worker that died since the last poll is reported by its sentinel
            worker.conn.send_bytes(task_blob)

    def poll(self, timeout: float | None) -> list[Outcome]:
        if self._done:
            done, self._done = self._done, []
            return done
        busy = [w for w in self._workers if w.task is not None]
        if not busy:
            return []
        item_timeout = self._spec.item_timeout
        if item_timeout is not None:
            # Wake up when the oldest running item becomes overdue, not only when something arrives.
            overdue_in = min(w.item_started + item_timeout for w in busy) - time.monotonic()
            timeout = max(overdue_in, 0) if timeout is None else max(min(timeout, overdue_in), 0)
        ready = multiprocessing.connection.wait(
            [w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=timeout
        )
        outcomes: list[Outcome] = []
        for worker in busy:
            outcome, held = None, worker.task
            # A worker that sent its result and then died: read the result before reporting a crash.
            if worker.conn in ready or (worker.process.sentinel in ready and worker.conn.poll()):
                outcome = self._receive(worker)
            elif worker.process.sentinel in ready:
                outcome = self._receiver.crashed(worker)
            elif item_timeout is not None and time.monotonic() - worker.item_started >= item_timeout:
                outcome = timeout_outcome(worker, self.method, item_timeout)
            if outcome is not None:
                outcomes.append(outcome)
                if self.recorder is not None:
                    self._note(worker, held, outcome)
        return outcomes

    def _tell(self, worker: WorkerProcess, ended: float | None = None) -> None:
        """Tell the recorder when ``worker`` was created, began, was ready (and ended)."""
        if self.recorder is not None:
            self.recorder.worker(f"worker {worker.number}", worker.created, worker.began, worker.ready, ended)

    def _note(self, worker: WorkerProcess, held: tuple[int, int, int] | None, outcome: Outcome) -> None:
        """Tell the recorder how the task ``worker`` held went: its timing, or its loss with the worker."""
        if self.recorder is None or held is None:
            return
        _, start, size = held
        name, now, timing = f"worker {worker.number}", time.perf_counter(), worker.timing
        worker.timing = None
        if timing is not None:
            failed = outcome[2] is not None
            self.recorder.ran(
                name, start, timing, sent=now, failed=failed, bytes_in=worker.bytes_in, bytes_out=worker.bytes_out
            )
            return
        # No timing came back: the worker died, was killed, or its outcome could not be read.
        done = min(len(outcome[1] or ()) + 1, size)
        self.recorder.lost(name, start, done, worker.sent_at, now, bytes_in=worker.bytes_in)
        self._tell(worker, ended=now if worker.stopped else None)

    def record(self, recorder: Recorder | None) -> None:
        """Feed ``recorder`` with the timings of the tasks that follow; None stops, telling it every worker's start-up."""
        if recorder is None:
            for worker in self._workers:
                self._tell(worker)
                worker.recording = False
        self.recorder = recorder

    def _receive(self, worker: WorkerProcess) -> Outcome | None:
        """Read what ``worker`` sent: an outcome when its task is finished, else None (stream mode)."""
        try:
            if worker.awaiting_init:
                worker.awaiting_init = False
                read_init(worker, self.method)  # no initializer: nothing to report but a death
                if not worker.conn.poll():
                    return None
            outcome = self._receiver.read(worker)
        except (EOFError, OSError):
            return self._receiver.crashed(worker)
        if outcome is not None:
            self._finish(worker)
        return outcome

    def _drain_dead(self, worker: WorkerProcess) -> Outcome:
        """The outcome of a dead worker's task: read what it sent, up to the end of its pipe."""
        while True:
            if not worker.conn.poll():
                return self._receiver.crashed(worker)
            outcome = self._receive(worker)  # at the end of the pipe this reports the crash
            if outcome is not None:
                return outcome

    def _finish(self, worker: WorkerProcess) -> None:
        worker.task = None
        worker.tasks_done += 1
        limit = self._spec.max_tasks_per_worker
        if limit is not None and worker.tasks_done >= limit:
            worker.stop(kill=False)  # replaced by _replace_dead on the next submit

    def cancel(self) -> None:
        busy = [w for w in self._workers if w.task is not None]
        for worker in busy:
            worker.task = None
        stop_all(busy)  # signalled together: one grace period, not one per worker

    def is_reusable(self) -> bool:
        return self._broken is None

    def shutdown(self) -> None:
        self._broken = self._broken or RuntimeError("pool shut down")
        stop_all(self._workers, kill=False)  # idle ones told to stop all at once: they exit together
        self._workers = []

    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests)."""
        return [w.process.pid for w in self._workers if not w.stopped and w.process.pid is not None]


class ProcessStrategy:
    """Run chunks in worker processes started by one ``multiprocessing`` start method."""

    uses_processes = True

    def __init__(self, method: str) -> None:
        self.name = method

    def create_pool(self, workers: int, facts: PlatformFacts, spec: PoolSpec) -> ProcessPool:
        return ProcessPool(self.name, workers, spec)
