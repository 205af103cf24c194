"""A call's deadline: the end of its ``timeout``, and its cancellation from another thread.

Both are checked between batches, while waiting on pools and while one starts.
A call that can be cancelled (``amap`` and ``aimap`` drive theirs from a thread
of their own) waits on its pool in slices of ``CANCEL_POLL_S``, so a
cancellation is seen within that time even while every worker is busy.

A pool is built by its strategy (``create_pool`` takes no deadline, so plugins
keep their signature); ``starting_within`` makes the call's deadline visible to
the start-up of the pool it builds, through a context variable that
``start_time_left`` reads, as trio's cancel scopes reach code that was not
passed them.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterator

__all__ = ["CANCEL_POLL_S", "CallCancelled", "Deadline", "start_time_left", "starting_within"]

#: Longest wait on a pool between two looks at a cancellable call's cancel event.
CANCEL_POLL_S = 0.05


class CallCancelled(BaseException):
    """The call was cancelled from another thread; it ends the way Ctrl-C ends it.

    A ``BaseException``, like ``KeyboardInterrupt``, so no ``except Exception``
    on the way catches it; it ends in the thread that drives the call.
    """


class Deadline:
    """The end of a call's ``timeout``: ``check()`` raises ``TimeoutError`` once it has passed.

    With ``cancel``, ``check()`` raises ``CallCancelled`` once the event is set.
    """

    def __init__(
        self,
        timeout: float | None,
        clock: Callable[[], float] = time.monotonic,
        cancel: threading.Event | None = None,
    ) -> None:
        self.timeout = timeout
        self.clock = clock
        self.at = None if timeout is None else clock() + timeout
        self.cancel = cancel

    def left(self) -> float | None:
        """Seconds left, possibly zero or negative (None without a timeout)."""
        return None if self.at is None else self.at - self.clock()

    def check(self) -> float | None:
        """Seconds to wait at most before the next check (None: no limit).

        Raises:
            CallCancelled: the call was cancelled.
            TimeoutError: the time is up.
        """
        if self.cancel is not None and self.cancel.is_set():
            msg = "autopar call cancelled"
            raise CallCancelled(msg)
        left = self.left()
        if left is not None and left <= 0:
            msg = f"autopar call timed out after {self.timeout} s"
            raise TimeoutError(msg)
        if self.cancel is not None:
            return CANCEL_POLL_S if left is None else min(left, CANCEL_POLL_S)
        return left


_starting: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("autopar_start_deadline", default=None)


@contextlib.contextmanager
def starting_within(deadline: Deadline) -> Iterator[None]:
    """Pools started inside this block stop waiting for their workers when ``deadline`` passes."""
    token = _starting.set(deadline)
    try:
        yield
    finally:
        _starting.reset(token)


def start_time_left() -> tuple[float | None, float | None]:
    """(seconds left, the call's timeout) of the call whose pool is starting; (None, None) without one."""
    deadline = _starting.get()
    if deadline is None or deadline.at is None:
        return None, None
    return deadline.left(), deadline.timeout
