"""``terminate_workers()`` and ``kill_workers()`` of Python 3.14's ``ProcessPoolExecutor``, on every Python."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import concurrent.futures

__all__ = ["stop_pool_workers"]


def stop_pool_workers(pool: concurrent.futures.Executor, how: Literal["terminate", "kill"]) -> None:
    """``terminate_workers()`` or ``kill_workers()`` as Python 3.14's ``ProcessPoolExecutor`` has them.

    A pool without worker processes (threads, serial) is shut down without
    waiting and with its pending calls cancelled; running threads finish their call.
    """
    native = getattr(pool, f"{how}_workers", None)
    if native is not None:  # ProcessPoolExecutor on 3.14 and later
        native()
        return
    # Before 3.14, the same steps as 3.14's ProcessPoolExecutor._force_shutdown, on the same
    # attribute: the worker processes, copied before shutdown() forgets them.
    processes = dict(getattr(pool, "_processes", None) or {})
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes.values():
        with contextlib.suppress(ValueError, ProcessLookupError):  # closed, or already gone
            if process.is_alive():
                getattr(process, how)()
