"""Process strategies: a pool of worker processes started by fork, forkserver or spawn.

Data flow (all driven by the calling thread; no helper thread, so a fork
replacement never races a thread of ours, and timeouts and Ctrl-C are seen
where they happen)::

    caller                                   worker processes
      submit: pickle (task, items) ------ pipe[i] --> process_main: run_chunk
      poll:   wait(pipes + sentinels) <-- pipe[i] --- ("ok"|"err", task, ...)
              sentinel fired on a busy worker -> WorkerCrashedError(index from its slot)

Each worker holds at most one task, so a crash is pinned to one chunk and the
shared ``slot`` names the item that was running.  A dead worker is replaced on
the next submit; ``cancel`` terminates the busy ones.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import time
from typing import TYPE_CHECKING, Any

from .._errors import SerializationError, WorkerCrashedError
from .._main_module import main_importable, process_context
from .._serialize import dumps_function
from .._worker import NATIVE_THREAD_VARS, ExceptionWithTraceback, Failure, inherited, process_main

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from .._model import PlatformFacts, PoolSpec
    from .._types import Outcome

__all__ = ["ProcessPool", "ProcessStrategy", "describe_exit"]

#: Seconds to wait for a worker to start and run its initializer before calling it broken.
_START_TIMEOUT_S = 60.0
#: Seconds a terminated worker gets before SIGKILL.
_TERMINATE_GRACE_S = 1.0
_tokens = itertools.count(1)


def describe_exit(exitcode: int | None) -> str:
    """Words for a process exit code: the signal name for a negative code."""
    if exitcode is None:
        return "an unknown exit status"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = {"SIGSEGV": "a segmentation fault", "SIGKILL": "killed, possibly by the out-of-memory killer"}
        extra = f" ({hint[name]})" if name in hint else ""
        return f"signal {name}{extra}"
    return f"exit code {exitcode}"


@contextlib.contextmanager
def _native_thread_env(count: int | None) -> Iterator[None]:
    """Set native thread limits in the environment a child inherits at start (spawn, forkserver)."""
    if count is None:
        yield
        return
    saved = {var: os.environ.get(var) for var in NATIVE_THREAD_VARS}
    for var in NATIVE_THREAD_VARS:
        os.environ.setdefault(var, str(count))
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


class _Worker:
    """One worker process, its pipe, its running-item slot and the task it holds."""

    def __init__(self, ctx: Any, spec: PoolSpec) -> None:
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.slot = ctx.Value("q", -1, lock=False)
        # Fork workers inherit the shared object; others get it pickled once, with their start-up.
        shared = None
        if spec.shared_key is not None and ctx.get_start_method() != "fork":
            shared = (spec.shared_key, spec.shared_payload)
        self.process = ctx.Process(
            target=process_main,
            args=(
                child_conn,
                self.slot,
                spec.native_threads,
                spec.inherit_token,
                spec.initializer,
                spec.initargs,
                shared,
            ),
            daemon=True,
            name="autopar-worker",
        )
        with _native_thread_env(spec.native_threads):
            self.process.start()
        child_conn.close()
        self.task: tuple[int, int, int] | None = None  # (task id, start, size)
        #: Stream mode: results of the running task received so far, and when its current item began.
        self.partial: list[Any] = []
        self.item_started = 0.0
        self.func_key: object = None
        self.tasks_done = 0
        self.stopped = False

    def stop(self, *, kill: bool) -> None:
        """End the process: politely if idle, by signal if ``kill``."""
        if self.stopped:
            return
        self.stopped = True
        if self.process.is_alive() and kill:
            self.process.terminate()
            self.process.join(_TERMINATE_GRACE_S)
            if self.process.is_alive():
                self.process.kill()
        elif self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send_bytes(pickle.dumps(None))
        self.process.join(_TERMINATE_GRACE_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(_TERMINATE_GRACE_S)
        self.conn.close()
        with contextlib.suppress(ValueError):
            self.process.close()


class ProcessPool:
    """``workers`` processes of one start method, each running one task at a time."""

    def __init__(self, method: str, workers: int, spec: PoolSpec) -> None:
        self.method = method
        self.workers = workers
        # spawn and forkserver children must not try to re-run a main file that is not on disk.
        self._ctx = process_context(method)
        self._spec = spec
        self._broken: BaseException | None = None
        self._done: list[Outcome] = []
        self._func_blob: tuple[object, bytes] | None = None
        self._workers: list[_Worker] = []
        if spec.inherit is not None:
            if method != "fork":
                msg = f"only fork workers can inherit a function, not {method} workers"
                raise ValueError(msg)
            # Kept while the pool lives: replacement workers inherit it too.
            inherited[spec.inherit_token or 0] = spec.inherit
        started = time.perf_counter()
        try:
            self._workers = [_Worker(self._ctx, spec) for _ in range(workers)]
            self._await_ready(self._workers)
        except BaseException:
            self.shutdown()
            raise
        self.startup_s = time.perf_counter() - started

    # -- start-up -------------------------------------------------------------

    def _await_ready(self, workers: list[_Worker]) -> None:
        """Wait for each worker's initializer report; raise its exception if one failed."""
        deadline = time.monotonic() + _START_TIMEOUT_S
        waiting = list(workers)
        while waiting:
            ready = multiprocessing.connection.wait(
                [w.conn for w in waiting] + [w.process.sentinel for w in waiting],
                timeout=max(deadline - time.monotonic(), 0),
            )
            if not ready:
                msg = f"{self.method} workers did not start within {_START_TIMEOUT_S:.0f} s"
                raise WorkerCrashedError(msg)
            for worker in list(waiting):
                if worker.conn in ready or worker.conn.poll():
                    self._read_init(worker)
                    waiting.remove(worker)
                elif worker.process.sentinel in ready:
                    msg = (
                        f"a {self.method} worker died while starting, with "
                        f"{describe_exit(worker.process.exitcode)}; no item had run"
                    )
                    raise WorkerCrashedError(msg, None, worker.process.exitcode)

    def _read_init(self, worker: _Worker) -> None:
        try:
            _kind, error = pickle.loads(worker.conn.recv_bytes())
        except (EOFError, OSError) as exc:
            msg = f"a {self.method} worker died while starting, with {describe_exit(worker.process.exitcode)}"
            raise WorkerCrashedError(msg, None, worker.process.exitcode) from exc
        if error is not None:
            # The initializer raised: fail the call with its exception, never respawn in a loop.
            self._broken = error.rebuild() if isinstance(error, ExceptionWithTraceback) else error
            raise self._broken

    def _replace_dead(self) -> None:
        fresh: list[_Worker] = []
        for i, worker in enumerate(self._workers):
            if worker.stopped or not worker.process.is_alive():
                if worker.task is not None:
                    # It died holding a task: keep what it sent before dying, and report the
                    # crash at the next poll, never drop it.
                    self._done.append(self._drain_dead(worker))
                worker.stop(kill=True)
                replacement = _Worker(self._ctx, self._spec)
                self._workers[i] = replacement
                fresh.append(replacement)
        if fresh:
            self._await_ready(fresh)

    # -- the Pool protocol ----------------------------------------------------

    def capacity(self) -> int:
        if self._broken is not None:
            return 0
        return sum(1 for w in self._workers if w.task is None)

    def _blob_for(self, func: Callable[[Any], Any]) -> tuple[object, bytes | None]:
        if self._spec.inherit is not None and func is self._spec.inherit:
            return ("inherit", self._spec.inherit_token), None
        if self._func_blob is None or self._func_blob[0] is not func:
            # Fork workers inherit ``__main__``; spawn and forkserver workers have it only from a file.
            importable = self.method == "fork" or main_importable()
            self._func_blob = (func, dumps_function(func, main_importable=importable))
        return func, self._func_blob[1]

    def submit(
        self, task_id: int, func: Callable[[Any], Any], items: Sequence[Any], start: int, capture_errors: bool
    ) -> None:
        self._replace_dead()
        key, func_blob = self._blob_for(func)
        mode = "stream" if self._spec.stream else ("capture" if capture_errors else "raise")
        try:
            task_blob = pickle.dumps((task_id, list(items), start, mode), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            msg = f"an item of input positions {start}..{start + len(items) - 1} could not be pickled to send to a {self.method} worker: {exc!r}"
            raise SerializationError(msg) from exc
        worker = next(w for w in self._workers if w.task is None)
        if worker.func_key is not key and func_blob is not None:
            with contextlib.suppress(OSError):  # a dead worker is reported by its sentinel
                worker.conn.send_bytes(func_blob)
            worker.func_key = key
        worker.task = (task_id, start, len(items))
        worker.partial = []
        worker.item_started = time.monotonic()
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
            overdue_in = min(w.item_started + item_timeout for w in busy) - time.monotonic()
            timeout = max(overdue_in, 0) if timeout is None else max(min(timeout, overdue_in), 0)
        ready = multiprocessing.connection.wait(
            [w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=timeout
        )
        outcomes: list[Outcome] = []
        for worker in busy:
            outcome = None
            if worker.conn in ready or (worker.process.sentinel in ready and worker.conn.poll()):
                outcome = self._receive(worker)
            elif worker.process.sentinel in ready:
                outcome = self._crashed(worker)
            elif item_timeout is not None and time.monotonic() - worker.item_started >= item_timeout:
                outcome = self._timed_out(worker, item_timeout)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def _receive(self, worker: _Worker) -> Outcome | None:
        """Read what ``worker`` sent: an outcome when its task is finished, else None (stream mode)."""
        assert worker.task is not None
        task_id = worker.task[0]
        while True:
            try:
                data = worker.conn.recv_bytes()
            except (EOFError, OSError):
                return self._crashed(worker)
            try:
                message = pickle.loads(data)
            except Exception as exc:
                msg = f"a result from a {self.method} worker could not be unpickled in the caller: {exc!r}"
                if self._spec.stream:
                    worker.partial.append(Failure(SerializationError(msg)))
                    worker.item_started = time.monotonic()
                    if worker.conn.poll():
                        continue
                    return None
                self._finish(worker)
                return (task_id, None, SerializationError(msg))
            kind = message[0]
            if kind == "item":
                worker.partial.append(message[2])
                worker.item_started = time.monotonic()
                if worker.conn.poll():
                    continue
                return None
            self._finish(worker)
            if kind == "done":
                return (task_id, worker.partial, None)
            if kind == "ok":
                return (task_id, message[2], None)
            error = message[2]
            # The wrapper unpickles as the rebuilt exception; a bare wrapper is rebuilt here.
            raised = error.rebuild() if isinstance(error, ExceptionWithTraceback) else error
            # Results of the chunk's items before the failing one come with the error.
            return (task_id, worker.partial if self._spec.stream else list(message[4]), raised)

    def _drain_dead(self, worker: _Worker) -> Outcome:
        """The outcome of a dead worker's task: read what it sent, up to the end of its pipe."""
        while True:
            if not worker.conn.poll():
                return self._crashed(worker)
            outcome = self._receive(worker)  # at the end of the pipe this reports the crash
            if outcome is not None:
                return outcome

    def _finish(self, worker: _Worker) -> None:
        worker.task = None
        worker.tasks_done += 1
        self._recycle(worker)

    def _timed_out(self, worker: _Worker, item_timeout: float) -> Outcome:
        assert worker.task is not None
        task_id, start, _ = worker.task
        worker.task = None
        index = start + len(worker.partial)
        worker.stop(kill=True)
        msg = f"item {index} ran longer than item_timeout={item_timeout} s; its {self.method} worker was stopped"
        return (task_id, worker.partial, TimeoutError(msg))

    def _crashed(self, worker: _Worker) -> Outcome:
        assert worker.task is not None
        task_id, start, size = worker.task
        worker.task = None
        worker.process.join(_TERMINATE_GRACE_S)  # reap it, so the exit code is known
        exitcode = worker.process.exitcode
        worker.stop(kill=True)
        index = start + len(worker.partial) if self._spec.stream else worker.slot.value
        if not start <= index < start + size:
            index = start if size == 1 else None
        where = f"item {index}" if index is not None else f"an item of positions {start}..{start + size - 1}"
        msg = f"a {self.method} worker died while running {where}, with {describe_exit(exitcode)}"
        error = WorkerCrashedError(msg, index, exitcode)
        return (task_id, worker.partial if self._spec.stream else None, error)

    def _recycle(self, worker: _Worker) -> None:
        limit = self._spec.max_tasks_per_worker
        if limit is not None and worker.tasks_done >= limit:
            worker.stop(kill=False)  # replaced by _replace_dead on the next submit

    def cancel(self) -> None:
        for worker in self._workers:
            if worker.task is not None:
                worker.task = None
                worker.stop(kill=True)

    def is_reusable(self) -> bool:
        return self._broken is None

    def shutdown(self) -> None:
        self._broken = self._broken or RuntimeError("pool shut down")
        for worker in self._workers:
            worker.stop(kill=worker.task is not None)
        self._workers = []
        if self._spec.inherit is not None:
            inherited.pop(self._spec.inherit_token or 0, None)

    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [w.process.pid for w in self._workers if not w.stopped and w.process.pid is not None]


class ProcessStrategy:
    """Run chunks in worker processes started by one ``multiprocessing`` start method."""

    uses_processes = True

    def __init__(self, method: str) -> None:
        self.name = method
        self.method = method

    def create_pool(self, workers: int, facts: PlatformFacts, spec: PoolSpec) -> ProcessPool:
        return ProcessPool(self.method, workers, spec)


def new_inherit_token() -> int:
    """A fresh token naming a function fork workers inherit."""
    return next(_tokens)
