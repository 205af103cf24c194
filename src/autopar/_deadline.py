"""A call's deadline: the end of its ``timeout``, checked between batches and while waiting on pools."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Deadline"]


class Deadline:
    """The end of a call's ``timeout``: ``check()`` raises ``TimeoutError`` once it has passed."""

    def __init__(self, timeout: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.clock = clock
        self.at = None if timeout is None else clock() + timeout

    def check(self) -> float | None:
        """Seconds left (None without a timeout).

        Raises:
            TimeoutError: the time is up.
        """
        if self.at is None:
            return None
        left = self.at - self.clock()
        if left <= 0:
            msg = f"autopar call timed out after {self.timeout} s"
            raise TimeoutError(msg)
        return left
