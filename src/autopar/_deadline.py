"""A call's deadline: the end of its ``timeout``, checked between batches, while waiting on pools and while one starts.

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
    from collections.abc import Callable, Iterator

__all__ = ["Deadline", "start_time_left", "starting_within"]


class Deadline:
    """The end of a call's ``timeout``: ``check()`` raises ``TimeoutError`` once it has passed."""

    def __init__(self, timeout: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.clock = clock
        self.at = None if timeout is None else clock() + timeout

    def left(self) -> float | None:
        """Seconds left, possibly zero or negative (None without a timeout)."""
        return None if self.at is None else self.at - self.clock()

    def check(self) -> float | None:
        """Seconds left (None without a timeout).

        Raises:
            TimeoutError: the time is up.
        """
        left = self.left()
        if left is not None and left <= 0:
            msg = f"autopar call timed out after {self.timeout} s"
            raise TimeoutError(msg)
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
