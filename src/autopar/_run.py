"""``map``, ``imap`` and ``explain``: validate the arguments, resolve the options, run a ``Call``.

One path serves every entry point (and ``amap``, ``aimap``, ``Executor.map`` and
the decorator through ``run_map``/``run_imap``)::

    check arguments -> resolve options (environment, call, decorator, config())
      -> Call: plan (the core's rules), calibrate if told to, execute
      -> results in input order (or as they complete), the call closed on the way out
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import _cache
from ._call import Call
from ._config import resolve
from ._recorder import Recorder, keep
from ._render import predicted_call_s, render_outcome

if TYPE_CHECKING:
    import threading

    from ._model import Decision, Options
    from ._types import R, T

logger = logging.getLogger("autopar")

__all__ = ["explain", "given_options", "imap", "map", "run_imap", "run_map"]


def _check_call(func: Any, iterable: Any) -> None:
    if not callable(func):
        msg = f"func must be callable, not {func!r} ({type(func).__name__})"
        raise TypeError(msg)
    if isinstance(iterable, (str, bytes)) or not isinstance(iterable, Iterable):
        msg = f"chunks must be an iterable of items (list, tuple, range, generator...), not {iterable!r} ({type(iterable).__name__})"
        raise TypeError(msg)


def given_options(**options: Any) -> dict[str, Any]:
    """The options a caller really gave: None means "not given", and so does ``strategy="auto"``."""
    return {k: v for k, v in options.items() if v is not None and not (k == "strategy" and v == "auto")}


def _run(
    func: Callable[[Any], Any],
    iterable: Iterable[Any],
    opts: Options,
    ordered: bool,
    cancel: threading.Event | None = None,
    kind: str = "map",
) -> tuple[Call, Decision, Iterator[Any]]:
    recorder = Recorder(kind) if opts.report else None
    call = Call(func, iterable, opts, cancel)
    call.recorder = recorder
    try:
        decision = call.decide()
    except BaseException as exc:
        call.close()
        if recorder is not None:
            keep(recorder.finish(None, call.done, exc))
        raise
    return call, decision, call.batches(decision, ordered)


def _report(call: Call, decision: Decision, error: BaseException | None) -> None:
    """Make the call's report this thread's ``last_report()`` (a call with ``report=True`` only)."""
    if call.recorder is not None:
        keep(call.recorder.finish(decision, call.done, error))


def map(
    func: Callable[[T], R],
    chunks: Iterable[T],
    *,
    strategy: str = "auto",
    workers: int | None = None,
    chunksize: int | None = None,
    timeout: float | None = None,
    **options: Any,
) -> list[R]:
    """Apply ``func`` to every item of ``chunks`` in parallel; return the results in input order.

    autopar measures the first items (each item still runs exactly once) and
    picks serial, threads or a process pool, with the worker count and chunk
    size; ``strategy`` forces one instead.

    Args:
        func: a callable of one argument.
        chunks: any iterable of items (list, tuple, range, generator).
        strategy: ``"auto"``, ``"serial"``, ``"threads"``, ``"fork"``, ``"forkserver"``,
            ``"spawn"`` or a registered name; ``AUTOPAR_STRATEGY`` overrides it.
        workers: how many workers (default: chosen); ``AUTOPAR_WORKERS`` overrides it.
        chunksize: items per task sent to a worker (default: chosen).
        timeout: seconds for the whole call; then ``TimeoutError`` and process workers are stopped.
        **options: ``errors``, ``progress``, ``initializer``, ``initargs``, ``max_tasks_per_worker``.

    Returns:
        ``[func(x) for x in chunks]``, computed in parallel.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
        TimeoutError: ``timeout`` expired.
        WorkerCrashedError: a worker process died (the item index and signal are in the message).
        SerializationError: an object could not cross to a worker process.
        Exception: the first exception raised by ``func``, with its own type, and the
            worker's traceback as ``__cause__``.
        BaseException: a ``SystemExit``, ``KeyboardInterrupt`` or other ``BaseException``
            that is not an ``Exception``, raised by ``func``: it ends the call whatever ``errors`` says.
    """
    given = given_options(strategy=strategy, workers=workers, chunksize=chunksize, timeout=timeout, **options)
    return run_map(func, chunks, given, {})


def run_map(func: Callable[[T], R], chunks: Iterable[T], call: dict[str, Any], decorator: dict[str, Any]) -> list[R]:
    """``map`` with the call's and a decorator's options kept apart for precedence."""
    _check_call(func, chunks)
    opts = resolve(call, decorator)
    started = time.perf_counter()
    run, decision, batches = _run(func, chunks, opts, ordered=True)
    out: list[R] = []
    error = None
    try:
        for batch in batches:
            out.extend(batch)
    except BaseException as exc:
        error = exc
        raise
    finally:
        run.close()
        _report(run, decision, error)
    _observe(run, decision, time.perf_counter() - started, len(out))
    return out


def _observe(call: Call, decision: Decision, elapsed_s: float, items: int) -> None:
    """Log the call's wall time against the prediction; tell the cache, so a drifted entry is recalibrated.

    The cache compares per-item times: the measured one scaled by the call's wall time over the
    prediction (calibration included where this call calibrated), so more workers than CPUs, each
    running slower, do not read as drift.  A call whose pool could not start ran another decision
    (``call.ran``): its time says nothing of the entry.
    """
    line = render_outcome(call.ran or decision, elapsed_s, items)
    if line is not None:
        logger.info("%s", line)
    m = decision.measurements
    if call.key is None or items <= 0 or decision.strategy == "serial" or call.ran is not None or m is None:
        return
    expected_s = predicted_call_s(decision) or 0.0
    if expected_s > 0 and _cache.observe(call.key, m.item_wall_s * elapsed_s / expected_s):
        logger.info("autopar: per-item time drifted; the next call recalibrates")


def imap(
    func: Callable[[T], R],
    iterable: Iterable[T],
    *,
    ordered: bool = True,
    strategy: str = "auto",
    workers: int | None = None,
    chunksize: int | None = None,
    timeout: float | None = None,
    **options: Any,
) -> Iterator[R]:
    """Lazily apply ``func`` to every item, reading the input only a bounded window ahead.

    At most a few chunks per worker are read ahead of what the caller has
    consumed, so an endless generator runs in bounded memory.  With
    ``ordered=False`` results come as they complete.  Options are those of
    ``map``; ``timeout`` covers the whole iteration.  Closing the iterator
    early cancels the work in flight.
    """
    given = given_options(strategy=strategy, workers=workers, chunksize=chunksize, timeout=timeout, **options)
    return run_imap(func, iterable, given, {}, ordered=ordered)


def run_imap(
    func: Callable[[T], R],
    iterable: Iterable[T],
    call: dict[str, Any],
    decorator: dict[str, Any],
    *,
    ordered: bool,
    cancel: threading.Event | None = None,
) -> Iterator[R]:
    """``imap`` with the call's and a decorator's options kept apart for precedence.

    Setting ``cancel`` from another thread makes the iteration raise ``CallCancelled``
    within ``CANCEL_POLL_S`` while it waits on a pool, or after the item running in
    its own thread; busy process workers are terminated first.
    """
    _check_call(func, iterable)
    opts = resolve(call, decorator)
    return _lazy(func, iterable, opts, ordered, cancel)


def _lazy(
    func: Callable[[Any], Any], iterable: Iterable[Any], opts: Options, ordered: bool, cancel: threading.Event | None
) -> Iterator[Any]:
    run, decision, batches = _run(func, iterable, opts, ordered, cancel, kind="imap")
    error = None
    try:
        for batch in batches:
            yield from batch
    except BaseException as exc:
        error = None if isinstance(exc, GeneratorExit) else exc  # closed early: no error
        raise
    finally:
        run.close()
        _report(run, decision, error)


def explain(func: Callable[[Any], Any], chunks: Iterable[Any], **options: Any) -> Decision:
    """What autopar would do with ``func`` over ``chunks``, and why, without running the whole workload.

    Calibration runs a small sample of the items in the caller (their results
    are discarded; the initializer, if any, runs there first and its cost is
    counted in every pool's start-up).  ``str()`` of the returned ``Decision``
    is a table of every candidate with its predicted time and the reasons.
    """
    _check_call(func, chunks)
    opts = resolve(given_options(**options))
    call = Call(func, chunks, opts)
    try:
        return call.decide(remember=False)
    finally:
        call.close()
