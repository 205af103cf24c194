"""One worker process as the caller sees it: its pipe, its running-item slot, its task; and start-up.

``WorkerProcess`` starts the child (inside ``native_thread_env``, so a spawn or
forkserver child starts with its native thread limits) and stops it.
``await_ready`` is the start-up handshake: every new worker reports its
initializer's outcome once, in an ``Init`` message.  A function fork workers
inherit instead of receiving it pickled (``PoolSpec.inherit``) is passed to the
child as a ``Process`` argument, which fork never pickles.

A worker is started and registered in one step (``start_workers``): whatever
fails or interrupts the caller between the two (an ``OSError`` from a limit,
Ctrl-C, ``MemoryError``) stops the process and closes its pipe, so no child is
left that the pool does not know.  Every live handle is known here, so a child
forked from this process (a fork worker, or a program's own ``os.fork()``)
closes the caller's ends of every worker pipe at once: a worker then sees
end-of-file when its caller is gone, instead of holding its own pipe open.
``await_ready`` waits no longer than the call's ``timeout`` allows.
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing.connection
import threading
import time
from typing import TYPE_CHECKING, Any

from ..._deadline import start_time_left
from ..._errors import WorkerCrashedError
from ..._forksafe import at_fork_in_child, forget_process
from ..._limits import start_error
from ..._native import native_thread_env
from ..._pickling import for_workers
from ._child import process_main
from ._failures import describe_exit
from ._popen import ClosingForkProcess
from ._protocol import Init, Stop, decode, encode, raised

if TYPE_CHECKING:
    from ..._model import PoolSpec

__all__ = ["TERMINATE_GRACE_S", "WorkerProcess", "await_ready", "read_init", "start_workers", "stop_all"]

#: Seconds to wait for a worker to start and run its initializer before calling it broken.
_START_TIMEOUT_S = 60.0
#: Seconds a terminated worker gets before SIGKILL.
TERMINATE_GRACE_S = 1.0


class ForkSlot:
    """A fork worker's running-item slot: 8 bytes of anonymous shared memory that the child inherits.

    ``multiprocessing.Value`` costs a first call about 2 ms of importing ``ctypes`` and a file in
    ``/dev/shm``; only spawn and forkserver children, which receive their slot pickled, need it.
    """

    __slots__ = ("_map", "view")

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, 8)
        #: The slot as one 8-byte integer: ``view[0] = position`` costs a third of setting ``value``.
        self.view = memoryview(self._map).cast("q")
        self.value = -1

    @property
    def value(self) -> int:
        position: int = self.view[0]
        return position

    @value.setter
    def value(self, position: int) -> None:
        self.view[0] = position


def _initializer(spec: PoolSpec, ctx: Any) -> Any:
    """The initializer as the child receives it: by value when it names ``__main__`` (fork: as it is)."""
    init = spec.initializer
    return init if init is None or ctx.get_start_method() == "fork" else for_workers(init)


class WorkerProcess:
    """One worker process, its pipe, its running-item slot and the task it holds."""

    def __init__(self, ctx: Any, spec: PoolSpec) -> None:
        self.stopped = False
        self.task: tuple[int, int, int] | None = None  # (task id, start, size)
        #: Stream mode: results of the running task received so far, and when its current item began.
        self.partial: list[Any] = []
        self.item_started = 0.0
        self.func_key: object = None
        self.tasks_done = 0
        #: Its ``Init`` is still unread: the pool did not wait for it (``ProcessPool(ready_later=True)``).
        self.awaiting_init = False
        #: For a report: its row number in the pool, and when it was created, began and was ready
        #: (``time.perf_counter()``; taken once per worker, recorded or not).
        self.number = 0
        self.created = time.perf_counter()
        self.began = self.ready = self.created
        #: For a recorded call (``recording``): the running task's timing as received, when it was
        #: sent, and the bytes of its task and of its outcome.
        self.recording = False
        self.timing: Any = None
        self.sent_at = 0.0
        self.bytes_in = self.bytes_out = 0
        self.conn, child_conn = ctx.Pipe(duplex=True)
        try:
            forks = ctx.get_start_method() == "fork"
            self.slot = ForkSlot() if forks else ctx.Value("q", -1, lock=False)
            process_class = ClosingForkProcess if forks else ctx.Process
            self.process = process_class(target=process_main, args=_child_args(ctx, spec, child_conn, self.slot))
            self.process.daemon = True
            self.process.name = "autopar-worker"
            _live.add(self)  # before the fork: a fork child closes this end of the pipe at once
            with native_thread_env(spec.native_threads):
                self.process.start()
        except BaseException:
            self._abandon()
            raise
        finally:
            child_conn.close()

    def _abandon(self) -> None:
        """Undo a start that failed or was interrupted: stop the process if it began, close the pipe."""
        process = getattr(self, "process", None)
        if process is not None and process.pid is not None:
            self.stop(kill=True)
        self.stopped = True
        self.conn.close()
        _live.discard(self)

    def begin(self, task_id: int, start: int, size: int) -> None:
        """Record the task this worker now holds."""
        self.task = (task_id, start, size)
        self.partial = []
        self.item_started = time.monotonic()

    def reap(self) -> int | None:
        """Wait briefly for the process to end, so its exit code is known; return it."""
        self.process.join(TERMINATE_GRACE_S)
        exitcode: int | None = self.process.exitcode
        return exitcode

    def stop(self, *, kill: bool) -> None:
        """End the process: politely if idle, by signal if ``kill``."""
        if self.stopped:
            return
        self.stopped = True
        if self.process.is_alive() and kill:
            self.process.terminate()
            self.process.join(TERMINATE_GRACE_S)
            if self.process.is_alive():
                self.process.kill()
        elif self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send_bytes(encode(Stop()))
        self.process.join(TERMINATE_GRACE_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(TERMINATE_GRACE_S)
        self.conn.close()
        _live.discard(self)
        with contextlib.suppress(ValueError):
            self.process.close()


def _child_args(ctx: Any, spec: PoolSpec, child_conn: Any, slot: Any) -> tuple[Any, ...]:
    """``process_main``'s arguments for one worker."""
    # Fork workers inherit the shared object; others get it pickled once, with their start-up.
    method = ctx.get_start_method()
    shared = None
    if spec.shared_key is not None and method != "fork":
        shared = (spec.shared_key, spec.shared_payload)
    # Linux's parent-death signal follows the thread that forks: only one that lives as long as its process.
    lifeline = "kernel" if threading.current_thread() is threading.main_thread() else "ppid"
    if method == "forkserver":
        lifeline = "sentinel"  # the parent is the forkserver, which outlives the caller while workers live
    return (
        child_conn,
        slot,
        spec.native_threads,
        spec.inherit,
        _initializer(spec, ctx),
        spec.initargs,
        shared,
        lifeline,
    )


def start_workers(ctx: Any, spec: PoolSpec, count: int, into: list[WorkerProcess]) -> list[WorkerProcess]:
    """Start ``count`` workers, appending each to ``into`` as soon as it runs; return the new ones.

    Raises:
        WorkerStartError: a worker could not start (a limit, memory, a failed forkserver);
            the workers started before it stay in ``into`` for the caller to stop.
    """
    fresh = []
    for _ in range(count):
        try:
            worker = WorkerProcess(ctx, spec)
        except (OSError, EOFError) as exc:
            raise start_error(ctx.get_start_method(), exc) from exc
        into.append(worker)
        fresh.append(worker)
    return fresh


def stop_all(workers: list[WorkerProcess], *, kill: bool = True) -> None:
    """End every worker, signalling all before waiting for any, so stopping takes one grace period.

    Busy workers, and all of them with ``kill``, are terminated; idle ones are told to stop.
    """
    for worker in workers:
        if not worker.stopped and worker.process.is_alive():
            with contextlib.suppress(OSError):
                if kill or worker.task is not None:
                    worker.process.terminate()
                else:
                    worker.conn.send_bytes(encode(Stop()))
    for worker in workers:
        worker.stop(kill=kill or worker.task is not None)


def _forget_in_child() -> None:
    """In a forked child: close the caller's end of every worker pipe; the workers are not its children."""
    for worker in list(_live):
        worker.stopped = True
        with contextlib.suppress(OSError):
            worker.conn.close()
        forget_process(getattr(worker, "process", None))
    _live.clear()


#: Every started, not yet stopped worker (held strongly: a forked child must see them all,
#: even when the parent's pool registry was dropped first).
_live: set[WorkerProcess] = set()
at_fork_in_child(_forget_in_child)


def _start_limit_s() -> tuple[float, float | None]:
    """Seconds to wait for workers to start, and the call's timeout when that is the limit."""
    left, timeout = start_time_left()
    if left is None or left >= _START_TIMEOUT_S:
        return _START_TIMEOUT_S, None
    return max(left, 0.0), timeout


def await_ready(workers: list[WorkerProcess], method: str) -> BaseException | None:
    """Wait for each worker's ``Init``; return the first initializer exception, None when all are ready.

    Waits up to 60 s, or what is left of the call's ``timeout`` when less.

    Raises:
        TimeoutError: the call's ``timeout`` passed while the workers started.
        WorkerCrashedError: a worker died while starting, or did not start in time.
    """
    limit_s, call_timeout = _start_limit_s()
    deadline = time.monotonic() + limit_s
    waiting = list(workers)
    while waiting:
        ready = multiprocessing.connection.wait(
            [w.conn for w in waiting] + [w.process.sentinel for w in waiting],
            timeout=max(deadline - time.monotonic(), 0),
        )
        if not ready:
            if call_timeout is not None:
                msg = f"autopar call timed out after {call_timeout} s while its {method} workers started (initializer still running)"
                raise TimeoutError(msg)
            msg = f"{method} workers did not start within {_START_TIMEOUT_S:.0f} s"
            raise WorkerCrashedError(msg)
        for worker in list(waiting):
            if worker.conn in ready or worker.conn.poll():
                error = read_init(worker, method)
                if error is not None:
                    return error
                waiting.remove(worker)
            elif worker.process.sentinel in ready:
                exitcode = worker.process.exitcode
                msg = f"a {method} worker died while starting, with {describe_exit(exitcode)}; no item had run"
                raise WorkerCrashedError(msg, None, exitcode)
    return None


def read_init(worker: WorkerProcess, method: str) -> BaseException | None:
    """Read ``worker``'s ``Init``: its initializer's exception, or None.

    Raises:
        WorkerCrashedError: the worker died before sending it.
    """
    try:
        message = decode(worker.conn.recv_bytes())
    except (EOFError, OSError) as exc:
        exitcode = worker.process.exitcode
        msg = f"a {method} worker died while starting, with {describe_exit(exitcode)}"
        raise WorkerCrashedError(msg, None, exitcode) from exc
    assert isinstance(message, Init), message
    worker.began, worker.ready = max(message.began, worker.created), max(message.ready, worker.created)
    return None if message.error is None else raised(message.error)
