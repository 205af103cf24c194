"""``amap`` and ``aimap``: ``autopar.map`` and ``autopar.imap`` for asyncio, never blocking the event loop.

Each call gets one thread that drives the blocking ``imap`` iterator
(calibration included) and hands results to the event loop::

    event loop (the awaiting task)                 thread autopar-aimap
      run_imap(...)  validates the options  ----->   for result in imap:
      await queue.get() <-- call_soon_threadsafe --      credits.acquire()   (at most _BUFFER ahead)
      credits.release() after taking a result            queue.put_nowait(result)
      cancelled or closed: stop.set(), cancel.set(),
        credits.release(), await the thread's end  <--   the call raises CallCancelled at its next
        (at most _STOP_WAIT_S)                           check: in-flight chunks dropped, busy
                                                         process workers terminated, imap closed

Read-ahead stays bounded: ``imap`` reads its input a few chunks per worker
ahead of what the thread consumed, and the thread runs at most ``_BUFFER``
results ahead of the awaiting task.  A cancelled call does not wait for the
chunks in flight: the thread sees the cancel event within ``CANCEL_POLL_S``
while it waits on a pool, terminates the busy process workers and abandons the
busy threads, so the cancellation completes once it has done so.  Only an item
running in the thread itself (calibration, a serial run) or a pool still
starting cannot be interrupted: after ``_STOP_WAIT_S`` the awaiting task stops
waiting, and the thread ends the call on its own at its next check.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from typing import TYPE_CHECKING, Any

from ._recorder import keep, last_report
from ._run import given_options, run_imap

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Iterable, Iterator

    from ._types import R, T

__all__ = ["aimap", "amap"]

#: Results the thread may hand over before the awaiting task takes them.
_BUFFER = 64
#: Seconds a cancellation waits for the thread to end the call; the promise is one second in all.
_STOP_WAIT_S = 0.75

_ITEM, _END, _ERROR = "item", "end", "error"


class _Pump:
    """One thread that iterates ``results`` and passes each result to the event loop."""

    def __init__(self, results: Iterator[Any], loop: asyncio.AbstractEventLoop, cancel: threading.Event) -> None:
        self._results = results
        self._loop = loop
        self._cancel = cancel  # the call's: set, it stops at its next check
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.credits = threading.Semaphore(_BUFFER)
        self._stop = threading.Event()
        self._finished: asyncio.Future[None] = loop.create_future()
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run,), name="autopar-aimap", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _post(self, callback: Callable[..., object], *args: Any) -> None:
        # A closed event loop raises RuntimeError: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *args)

    def _run(self) -> None:
        try:
            for result in self._results:
                self.credits.acquire()
                if self._stop.is_set():
                    break
                self._post(self.queue.put_nowait, (_ITEM, result))
            else:
                self._post(self.queue.put_nowait, (_END, None))
        except BaseException as exc:
            self._post(self.queue.put_nowait, (_ERROR, exc))
        finally:
            try:
                self._results.close()  # type: ignore[attr-defined]
            finally:
                report = last_report()  # this thread's: made only by this call, with report=True
                if report is not None:
                    self._post(keep, report)  # the event loop's thread reads it, before it sees the end
                self._post(self._set_finished)

    def _set_finished(self) -> None:
        if not self._finished.done():
            self._finished.set_result(None)

    async def stop(self) -> None:
        """Cancel the call, and wait for the thread to end it (at most ``_STOP_WAIT_S``)."""
        self._stop.set()
        self._cancel.set()
        self.credits.release()  # wake the thread if it waits for room
        try:
            await asyncio.wait_for(asyncio.shield(self._finished), _STOP_WAIT_S)
        except asyncio.TimeoutError:  # the builtin TimeoutError from Python 3.11
            # It runs an item itself, or starts a pool: it ends the call at its next check, alone.
            return
        # The thread has posted its last message and only returns now: joining it takes microseconds.
        self._thread.join()


async def _stream(pump: _Pump) -> AsyncGenerator[Any, None]:
    pump.start()
    try:
        while True:
            kind, value = await pump.queue.get()
            if kind == _ITEM:
                pump.credits.release()
                yield value
            elif kind == _END:
                return
            else:
                raise value
    finally:
        await pump.stop()


def aimap(
    func: Callable[[T], R],
    iterable: Iterable[T],
    *,
    ordered: bool = True,
    strategy: str = "auto",
    workers: int | None = None,
    chunksize: int | None = None,
    timeout: float | None = None,
    **options: Any,
) -> AsyncGenerator[R, None]:
    """``autopar.imap`` as an async generator: results stream to the event loop, which is never blocked.

    The blocking iteration, calibration included, runs in a thread of its own;
    the input is read only a bounded window ahead, as with ``imap``.  Options
    are those of ``autopar.imap``; a ``progress`` callable is called from that
    thread.  Leaving the loop early or cancelling the awaiting task cancels
    the work in flight and terminates busy process workers; use
    ``contextlib.aclosing(aimap(...))`` so an early ``break`` cleans up at once.

    Raises:
        TypeError, ValueError: a bad argument, at once.
        TimeoutError, WorkerCrashedError, SerializationError, Exception: as ``autopar.imap``,
            from the iteration.
    """
    given = given_options(strategy=strategy, workers=workers, chunksize=chunksize, timeout=timeout, **options)
    cancel = threading.Event()
    results = run_imap(func, iterable, given, {}, ordered=ordered, cancel=cancel)
    return _stream(_Pump(results, asyncio.get_running_loop(), cancel))


async def amap(
    func: Callable[[T], R],
    iterable: Iterable[T],
    *,
    strategy: str = "auto",
    workers: int | None = None,
    chunksize: int | None = None,
    timeout: float | None = None,
    **options: Any,
) -> list[R]:
    """``autopar.map`` for asyncio: ``await amap(func, items)`` is the list of results in input order.

    The work, calibration included, runs off the event loop (see ``aimap``).
    Cancelling the awaiting task cancels the work in flight and terminates busy
    process workers before the cancellation completes.

    Raises:
        TypeError, ValueError: a bad argument.
        TimeoutError, WorkerCrashedError, SerializationError, Exception: as ``autopar.map``.
    """
    stream = aimap(func, iterable, strategy=strategy, workers=workers, chunksize=chunksize, timeout=timeout, **options)
    return [result async for result in stream]
