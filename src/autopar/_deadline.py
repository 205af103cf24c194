"""A call's deadline: the end of its ``timeout``, and its cancellation from another thread.

Both are checked between batches and while waiting on pools.  A call that can
be cancelled (``amap`` and ``aimap`` drive theirs from a thread of their own)
waits on its pool in slices of ``CANCEL_POLL_S``, so a cancellation is seen
within that time even while every worker is busy.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

__all__ = ["CANCEL_POLL_S", "CallCancelled", "Deadline"]

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

    def check(self) -> float | None:
        """Seconds to wait at most before the next check (None: no limit).

        Raises:
            CallCancelled: the call was cancelled.
            TimeoutError: the time is up.
        """
        if self.cancel is not None and self.cancel.is_set():
            msg = "autopar call cancelled"
            raise CallCancelled(msg)
        left = None
        if self.at is not None:
            left = self.at - self.clock()
            if left <= 0:
                msg = f"autopar call timed out after {self.timeout} s"
                raise TimeoutError(msg)
        if self.cancel is not None:
            return CANCEL_POLL_S if left is None else min(left, CANCEL_POLL_S)
        return left
