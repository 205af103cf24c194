"""``Executor.map``: a forced strategy's ``map`` on the executor's pool, auto's through ``autopar.imap``.

Data flow::

    forced: pool.map(fn, *iterables)            -> hand_over: progress, a dead worker as WorkerCrashedError
    auto:   run_imap(Star(fn), Zip(*iterables)) -> hand_over: the deadline, TimeoutError as map's contract

Both hand their results over through ``hand_over``, which keeps no reference
to a result it has yielded and closes the underlying iterator when the
caller stops.  ``Star``, ``ReturnErrors`` and ``Zip`` adapt the function and
the iterables: picklable wrappers, so process workers can run them, and a
``zip`` that keeps the input's length for progress totals.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterable, Iterator, Sized
from typing import TYPE_CHECKING, Any

from .._config import validate_options
from .._core._safety import PROCESS_METHODS
from .._progress import make_progress
from .._run import given_options, run_imap
from ._buffered import buffered_map
from ._pools import translated

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from .._model import Options
    from .._types import T

__all__ = ["ReturnErrors", "Star", "Zip", "common_length", "hand_over", "map_auto", "map_buffered", "map_forced"]


class Star:
    """``fn(*args)`` as a function of one tuple, picklable when ``fn`` is (for spawn workers)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, args: tuple[Any, ...]) -> Any:
        return self.fn(*args)


class ReturnErrors:
    """``fn(*args)``, with an exception returned as the result (``errors="return"``)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.__wrapped__ = fn  # auto's submit times and routes calls by the function under it

    def __call__(self, *args: Any) -> Any:
        try:
            return self.fn(*args)
        except Exception as exc:
            return exc


def common_length(iterables: tuple[Iterable[Any], ...]) -> int | None:
    """The length of the shortest iterable, or None unless all of them are sized."""
    if iterables and all(isinstance(it, Sized) for it in iterables):
        return min(len(it) for it in iterables)  # type: ignore[arg-type]
    return None


class Zip:
    """``zip(*iterables)`` that keeps the length of sized iterables, so imap reports progress totals."""

    def __init__(self, iterables: tuple[Iterable[Any], ...], length: int) -> None:
        self._iterables = iterables
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return zip(*self._iterables, strict=False)


def _unchanged(exc: Exception) -> BaseException:
    return exc


def hand_over(
    results: Iterator[T],
    *,
    translate: Callable[[Exception], BaseException] = _unchanged,
    on_result: Callable[[int], None] | None = None,
    deadline: float | None = None,
) -> Generator[T, None, None]:
    """Yield each of ``results``, keeping no reference to one once it is yielded; close ``results`` at the end.

    Args:
        results: the iterator to hand over; closed (if it has ``close``) when
            this generator ends, fails or is closed.
        translate: maps an exception ``results`` raised to the one to raise
            instead (chained from it); an exception it returns unchanged is re-raised.
        on_result: called with the number of results so far, before each is yielded.
        deadline: ``time.monotonic()`` value after which a result that was
            awaited across it raises ``concurrent.futures.TimeoutError``.
    """
    box: list[Any] = []
    end = object()
    done = 0
    try:
        while True:
            waiting_since = time.monotonic()
            try:
                box.append(next(results, end))
            except Exception as exc:
                error = translate(exc)
                if error is exc:
                    raise
                raise error from exc
            if box[-1] is end:
                return
            if deadline is not None and waiting_since < deadline < time.monotonic():
                # The deadline passed while this result was awaited: it was not ready in time, even
                # though imap could not stop an item it ran in the caller while calibrating.
                msg = "Executor.map: a result was not ready before the timeout"
                raise concurrent.futures.TimeoutError(msg)
            done += 1
            if on_result is not None:
                on_result(done)
            yield box.pop()  # the yield hands the only reference to the caller
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()


def map_forced(
    pool: concurrent.futures.Executor,
    fn: Callable[..., T],
    iterables: tuple[Iterable[Any], ...],
    opts: Options,
    *,
    timeout: float | None,
    chunksize: int | None,
) -> Iterator[T]:
    """``pool.map`` of a forced strategy: every call submitted now, results with progress and crashes translated."""
    func = ReturnErrors(fn) if opts.errors == "return" else fn
    results = pool.map(func, *iterables, timeout=timeout, chunksize=chunksize or 1)
    return _reported(results, common_length(iterables), opts)


def map_buffered(
    submit: Callable[..., concurrent.futures.Future[Any]],
    fn: Callable[..., T],
    iterables: tuple[Iterable[Any], ...],
    opts: Options,
    *,
    timeout: float | None,
    chunksize: int | None,
    buffersize: int,
) -> Iterator[T]:
    """``map`` with ``buffersize``: at most that many calls submitted ahead, on any strategy's ``submit``."""
    func = ReturnErrors(fn) if opts.errors == "return" else fn
    # Chunks help process pools only; auto's submit routes each call by its function.
    size = (chunksize or 1) if opts.strategy in PROCESS_METHODS else 1
    results = buffered_map(submit, func, iterables, timeout=timeout, chunksize=size, buffersize=buffersize)
    return _reported(results, common_length(iterables), opts)


def _reported(results: Iterator[T], total: int | None, opts: Options) -> Iterator[T]:
    progress = make_progress(opts.progress, total)
    on_result = None if progress is None else lambda done: progress(done, total)
    yield from hand_over(results, translate=lambda exc: translated(exc, opts.strategy), on_result=on_result)


def map_auto(
    fn: Callable[..., T],
    iterables: tuple[Iterable[Any], ...],
    opts: Options,
    *,
    deadline: float | None,
    chunksize: int | None,
) -> Iterator[T]:
    """Auto's ``map``: the calls run lazily through ``autopar.imap`` with the executor's options."""
    items: Iterable[Any]
    func: Callable[[Any], T]
    if len(iterables) == 1:
        func, items = fn, iterables[0]
        if isinstance(items, (str, bytes)):
            items = list(items)
    else:
        length = common_length(iterables)
        func, items = Star(fn), zip(*iterables, strict=False) if length is None else Zip(iterables, length)
    call = {
        "workers": opts.workers,
        "chunksize": chunksize,
        "initializer": opts.initializer,
        "initargs": opts.initargs if opts.initializer is not None else None,
        "max_tasks_per_worker": opts.max_tasks_per_worker,
        "errors": opts.errors,
        "progress": opts.progress,
        "report": opts.report or None,  # not given: a config(report=True) around the call still counts
    }
    call = validate_options(given_options(**call))
    return _imap_results(func, items, call, deadline)


def _imap_results(
    func: Callable[[Any], T], items: Iterable[Any], call: dict[str, Any], deadline: float | None
) -> Iterator[T]:
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise concurrent.futures.TimeoutError
        call["timeout"] = left
    results = run_imap(func, items, call, {}, ordered=True)
    yield from hand_over(results, translate=_futures_timeout, deadline=deadline)


def _futures_timeout(exc: Exception) -> BaseException:
    # The same class on 3.11+; on 3.10 Executor.map's contract is concurrent.futures.TimeoutError.
    if isinstance(exc, TimeoutError) and not isinstance(exc, concurrent.futures.TimeoutError):
        return concurrent.futures.TimeoutError(str(exc))
    return exc
