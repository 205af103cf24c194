"""What runs inside a worker: one chunk of items, and the "inside a worker" mark for nested calls.

Every strategy runs its chunks through ``run_chunk`` (threads, serial runs,
Dask tasks and the process workers of ``_strategies/_process/_child.py``).
Kept small and cheap to import (standard library and ``_errors`` only): spawn
and forkserver import it in every child before the first item.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from ._errors import ExceptionWithTraceback, capture

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "SLOWEST_KEPT",
    "ChunkFailed",
    "ChunkTiming",
    "Failure",
    "ItemClock",
    "is_inside_worker",
    "mark_process_worker",
    "run_chunk",
    "until_failure",
    "unwrap",
]

#: Slowest items a recorded chunk keeps (and a report shows), as mpire keeps its five longest tasks.
SLOWEST_KEPT = 5

_local = threading.local()
_in_process_worker = False


def is_inside_worker() -> bool:
    """True inside an autopar worker: a process worker, or a thread running an autopar chunk."""
    return _in_process_worker or getattr(_local, "inside", False)


def mark_process_worker() -> None:
    """Mark this whole process as an autopar worker, so calls made here know they are nested."""
    global _in_process_worker
    _in_process_worker = True


class Failure:
    """Marks an item whose function raised, in a result list (a function may return an exception)."""

    __slots__ = ("error",)

    def __init__(self, error: Any) -> None:
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:
        return Failure, (self.error,)

    def exception(self) -> BaseException:
        """The exception, with the worker's traceback attached as ``__cause__``."""
        error = self.error
        return error.rebuild() if isinstance(error, ExceptionWithTraceback) else error


def unwrap(results: list[Any], capture_errors: bool) -> list[Any]:
    """Results as the caller sees them: a ``Failure`` becomes its exception, or is raised."""
    if Failure not in map(type, results):
        return results
    out = []
    for value in results:
        if isinstance(value, Failure):
            if not capture_errors:
                raise value.exception()
            value = value.exception()
        out.append(value)
    return out


def until_failure(results: list[Any], capture_errors: bool) -> Iterator[list[Any]]:
    """``results`` as the caller sees them; without ``capture_errors``, those before a failure, then its exception."""
    if not capture_errors and Failure in map(type, results):
        failed = next(i for i, value in enumerate(results) if isinstance(value, Failure))
        yield results[:failed]
        raise results[failed].exception()
    yield unwrap(results, capture_errors)


class ChunkFailed(Exception):
    """Internal: an item of a chunk raised; carries its offset in the chunk."""

    def __init__(self, wrapped: ExceptionWithTraceback, offset: int, results: list[Any]) -> None:
        super().__init__(offset)
        self.wrapped = wrapped
        self.offset = offset
        self.results = results


def run_chunk(
    func: Callable[[Any], Any],
    items: Iterable[Any],
    start: int,
    *,
    capture_errors: bool,
    in_process: bool,
    slot: Any = None,
) -> list[Any]:
    """Apply ``func`` to ``items`` in order.

    With ``capture_errors`` a failing item's slot holds a ``Failure`` and the
    rest go on; otherwise the first failure raises ``ChunkFailed``.  With a
    ``slot`` (a process worker's shared value), ``slot.value`` holds the input
    position of the running item, so the caller can name it if the process dies.
    """
    results: list[Any] = []
    append = results.append
    remaining = iter(items)
    _local.inside = True
    try:
        while True:
            try:
                # One try around the loop, not one per item: this is the hot path of tiny work.  extend(map())
                # loops in C, and keeps the results appended before a failure (the iterator is then past it).
                view = getattr(slot, "view", None)  # a fork worker's slot, written at C speed
                if slot is None:
                    results.extend(map(func, remaining))
                elif view is not None:
                    for position, item in enumerate(remaining, start + len(results)):
                        view[0] = position
                        append(func(item))
                else:
                    for item in remaining:
                        slot.value = start + len(results)
                        append(func(item))
                return results
            except Exception as exc:
                wrapped = capture(exc, check_pickle=in_process)
                if not capture_errors:
                    raise ChunkFailed(wrapped, len(results), results) from None
                # A process worker sends the wrapper (it pickles as the rebuilt exception).
                append(Failure(wrapped if in_process else wrapped.rebuild()))
    finally:
        _local.inside = False


class ChunkTiming(NamedTuple):
    """When a recorded chunk ran (``time.perf_counter()``: one system-wide clock on Linux, macOS and
    Windows, so a worker's stamps compare with its caller's), how many items ran to an end,
    and its slowest items as ``(seconds, input position)``."""

    began: float
    ended: float
    items: int
    slowest: tuple[tuple[float, int], ...]


class ItemClock:
    """``func``, timing every call: a recorded chunk (``report=True``) runs through one instead of ``func``.

    Only recorded calls pay for it: two clock reads and a comparison per item.
    """

    __slots__ = ("_func", "_position", "_slowest", "began")

    def __init__(self, func: Callable[[Any], Any], start: int) -> None:
        self._func = func
        self._position = start
        self._slowest: list[tuple[float, int]] = []  # a min-heap of at most SLOWEST_KEPT
        self.began = time.perf_counter()

    def __call__(self, item: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._func(item)
        finally:
            seconds = time.perf_counter() - started
            slowest = self._slowest
            if len(slowest) < SLOWEST_KEPT:
                heapq.heappush(slowest, (seconds, self._position))
            elif seconds > slowest[0][0]:
                heapq.heapreplace(slowest, (seconds, self._position))
            self._position += 1

    def timing(self, start: int) -> ChunkTiming:
        """The chunk's timing, now that it ended; ``start`` is its first input position."""
        return ChunkTiming(self.began, time.perf_counter(), self._position - start, tuple(self._slowest))
