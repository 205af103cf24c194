"""``Executor.map(..., buffersize=n)``: Python 3.14's bounded read-ahead, on every Python.

Data flow::

    buffered_map(submit, fn, iterables, buffersize=n)
      now:        the first n calls (or chunks of chunksize calls) submitted
      each next:  one more call submitted, then the oldest result awaited and yielded
      end, close: the calls not yet yielded are cancelled

So at most ``n`` calls (or chunks) are submitted and not yet yielded, and the
input is read only as results are consumed: an endless iterator works, and
``map`` returns without reading more than ``n`` items (``n * chunksize`` in chunks).
It follows CPython 3.14's ``Executor.map`` (``concurrent/futures/_base.py``),
messages included, so the same code runs on 3.10 to 3.13 as on 3.14.
"""

from __future__ import annotations

import collections
import itertools
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from concurrent.futures import Future

__all__ = ["ChunkCall", "buffered_map", "check_buffersize"]


def check_buffersize(buffersize: object) -> None:
    """Raise as CPython 3.14's ``Executor.map`` does for a bad ``buffersize``.

    Raises:
        TypeError: not an integer (``bool`` counts as one there too) nor None.
        ValueError: an integer below 1.
    """
    if buffersize is not None and not isinstance(buffersize, int):
        msg = "buffersize must be an integer or None"
        raise TypeError(msg)
    if buffersize is not None and buffersize < 1:
        msg = "buffersize must be None or > 0"
        raise ValueError(msg)


class ChunkCall:
    """``[fn(*args) for args in chunk]``: several calls as one task, picklable when ``fn`` is."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, chunk: tuple[tuple[Any, ...], ...]) -> list[Any]:
        return [self.fn(*args) for args in chunk]


def _chunks(args: Iterator[tuple[Any, ...]], size: int) -> Iterator[tuple[tuple[Any, ...], ...]]:
    while chunk := tuple(itertools.islice(args, size)):
        yield chunk


def buffered_map(
    submit: Callable[..., Future[Any]],
    fn: Callable[..., Any],
    iterables: tuple[Iterable[Any], ...],
    *,
    timeout: float | None,
    chunksize: int,
    buffersize: int,
) -> Iterator[Any]:
    """Submit the first ``buffersize`` tasks now; return an iterator that keeps that many ahead.

    Args:
        submit: the executor's ``submit``.
        fn: called with one argument from each iterable.
        iterables: the arguments; the shortest one ends the map.
        timeout: seconds from this call until every result must be ready.
        chunksize: calls per task; above 1 each task runs a chunk (for process pools).
        buffersize: tasks submitted and not yet yielded, at most.
    """
    end = None if timeout is None else time.monotonic() + timeout
    args: Iterator[Any] = zip(*iterables, strict=False)
    if chunksize > 1:
        args, fn = _chunks(args, chunksize), ChunkCall(fn)
    tasks = _tasks(args, chunksize)
    pending = collections.deque(submit(fn, *task) for task in itertools.islice(tasks, buffersize))
    results = _results(submit, fn, tasks, pending, end)
    return itertools.chain.from_iterable(results) if chunksize > 1 else results


def _tasks(args: Iterator[Any], chunksize: int) -> Iterator[tuple[Any, ...]]:
    """Each task's positional arguments: a call's own, or the chunk as one argument."""
    return ((chunk,) for chunk in args) if chunksize > 1 else args


def _result_or_cancel(future: Future[Any], end: float | None) -> Any:
    try:
        return future.result(None if end is None else end - time.monotonic())
    finally:
        future.cancel()  # after a timeout it is still pending or running: cancel what can be


def _results(
    submit: Callable[..., Future[Any]],
    fn: Callable[..., Any],
    tasks: Iterator[tuple[Any, ...]],
    pending: collections.deque[Future[Any]],
    end: float | None,
) -> Iterator[Any]:
    try:
        while pending:
            task = next(tasks, None)
            if task is not None:
                pending.append(submit(fn, *task))
            # Straight from the deque into the yield: no local keeps the result alive once the caller drops it.
            yield _result_or_cancel(pending.popleft(), end)
    finally:
        for future in pending:
            future.cancel()
