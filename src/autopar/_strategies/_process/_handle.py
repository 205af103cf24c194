"""One worker process as the caller sees it: its pipe, its running-item slot, its task; and start-up.

``WorkerProcess`` starts the child (inside ``native_thread_env``, so a spawn or
forkserver child starts with its native thread limits) and stops it.
``await_ready`` is the start-up handshake: every new worker reports its
initializer's outcome once, in an ``Init`` message.  A function fork workers
inherit instead of receiving it pickled (``PoolSpec.inherit``) is passed to the
child as a ``Process`` argument, which fork never pickles.
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection
import time
from typing import TYPE_CHECKING, Any

from ..._errors import WorkerCrashedError
from ..._native import native_thread_env
from ..._pickling import for_workers
from ._child import process_main
from ._failures import describe_exit
from ._protocol import Init, Stop, decode, encode, raised

if TYPE_CHECKING:
    from ..._model import PoolSpec

__all__ = ["TERMINATE_GRACE_S", "WorkerProcess", "await_ready"]

#: Seconds to wait for a worker to start and run its initializer before calling it broken.
_START_TIMEOUT_S = 60.0
#: Seconds a terminated worker gets before SIGKILL.
TERMINATE_GRACE_S = 1.0


def _initializer(spec: PoolSpec, ctx: Any) -> Any:
    """The initializer as the child receives it: by value when it names ``__main__`` (fork: as it is)."""
    init = spec.initializer
    return init if init is None or ctx.get_start_method() == "fork" else for_workers(init)


class WorkerProcess:
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
                spec.inherit,
                _initializer(spec, ctx),
                spec.initargs,
                shared,
            ),
            daemon=True,
            name="autopar-worker",
        )
        with native_thread_env(spec.native_threads):
            self.process.start()
        child_conn.close()
        self.task: tuple[int, int, int] | None = None  # (task id, start, size)
        #: Stream mode: results of the running task received so far, and when its current item began.
        self.partial: list[Any] = []
        self.item_started = 0.0
        self.func_key: object = None
        self.tasks_done = 0
        self.stopped = False

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
        with contextlib.suppress(ValueError):
            self.process.close()


def await_ready(workers: list[WorkerProcess], method: str) -> BaseException | None:
    """Wait for each worker's ``Init``; return the first initializer exception, None when all are ready.

    Raises:
        WorkerCrashedError: a worker died while starting, or did not start in time.
    """
    deadline = time.monotonic() + _START_TIMEOUT_S
    waiting = list(workers)
    while waiting:
        ready = multiprocessing.connection.wait(
            [w.conn for w in waiting] + [w.process.sentinel for w in waiting],
            timeout=max(deadline - time.monotonic(), 0),
        )
        if not ready:
            msg = f"{method} workers did not start within {_START_TIMEOUT_S:.0f} s"
            raise WorkerCrashedError(msg)
        for worker in list(waiting):
            if worker.conn in ready or worker.conn.poll():
                error = _read_init(worker, method)
                if error is not None:
                    return error
                waiting.remove(worker)
            elif worker.process.sentinel in ready:
                exitcode = worker.process.exitcode
                msg = f"a {method} worker died while starting, with {describe_exit(exitcode)}; no item had run"
                raise WorkerCrashedError(msg, None, exitcode)
    return None


def _read_init(worker: WorkerProcess, method: str) -> BaseException | None:
    try:
        message = decode(worker.conn.recv_bytes())
    except (EOFError, OSError) as exc:
        exitcode = worker.process.exitcode
        msg = f"a {method} worker died while starting, with {describe_exit(exitcode)}"
        raise WorkerCrashedError(msg, None, exitcode) from exc
    assert isinstance(message, Init), message
    return None if message.error is None else raised(message.error)
