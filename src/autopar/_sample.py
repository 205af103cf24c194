"""The serial sample: the first items, run one batch after another in the caller and timed.

Batches double in size (tiny items are timed in batches) until ``sample_done``
says the sample is long enough.  Each batch is timed with the wall clock, the
thread's CPU clock, the process's CPU clock and the thread's voluntary context
switches; every item's result is kept for the output.  A first item that
imports third-party modules (``warmup_batch``) runs, but its time is left out.
"""

from __future__ import annotations

import itertools
import sys
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ._core._sampling import sample_batch_size, sample_done, warmup_batch
from ._model import SerialSample
from ._worker import ChunkFailed, Failure, run_chunk

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from ._bytecode import CShare
    from ._calibrate import Clocks
    from ._carry_watch import FirstItemWatch

__all__ = ["add_batch", "run_in_caller", "run_kept", "sample_serially"]

_END = object()
_N = TypeVar("_N", int, float)


def run_in_caller(func: Callable[[Any], Any], batch: list[Any], start: int, capture_errors: bool) -> list[Any]:
    """Run ``batch`` in the calling thread; the first failure raises the function's own exception."""
    try:
        return run_chunk(func, batch, start, capture_errors=capture_errors, in_process=False)
    except ChunkFailed as failed:
        raise failed.wrapped.rebuild()  # noqa: B904 - its __cause__ is the traceback text


def run_kept(func: Callable[[Any], Any], batch: Iterable[Any], results: list[Any], capture_errors: bool) -> bool:
    """Run ``batch`` in the caller, its results appended to ``results``; True if an item raised.

    The first item that raises (without ``capture_errors``) ends the batch: the results
    before it, then its ``Failure``, are the last results; the call raises it after them.
    """
    try:
        results.extend(run_chunk(func, batch, len(results), capture_errors=capture_errors, in_process=False))
    except ChunkFailed as failed:
        results.extend([*failed.results, Failure(failed.wrapped)])
        return True
    return False


def add_batch(
    sample: SerialSample,
    batch: int,
    wall: float,
    cpu: float,
    process: float,
    waits: int | None,
    queued: float | None = None,
) -> SerialSample:
    """``sample`` with one more timed batch of ``batch`` items added (``queued``: its seconds queued for a CPU)."""
    known = queued is not None and (sample.queued_s is not None or sample.count == 0)
    return SerialSample(
        count=sample.count + batch,
        wall_s=sample.wall_s + wall,
        cpu_s=sample.cpu_s + cpu,
        process_s=sample.process_s + process,
        max_item_s=max(sample.max_item_s if sample.count > 1 else 0.0, wall / batch),  # the first alone runs cold
        waits=None if waits is None or sample.waits is None else sample.waits + waits,
        queued_s=(sample.queued_s or 0.0) + queued if known and queued is not None else None,
        warmup_items=sample.warmup_items,
        warmup_s=sample.warmup_s,
    )


#: Top-level names whose imports are not the function's warm-up: the standard library (cheap, and what
#: autopar's own threads import meanwhile), autopar and its by-value pickler.
_NOT_WARMUP = frozenset(getattr(sys, "stdlib_module_names", ())) | {"autopar", "cloudpickle", "__main__", "__mp_main__"}


def third_party_imports(before: int) -> int:
    """How many modules past the first ``before`` of ``sys.modules`` are third-party (dicts keep insertion order)."""
    if len(sys.modules) <= before:
        return 0
    return sum(name.partition(".")[0] not in _NOT_WARMUP for name in list(sys.modules)[before:])


def _since(before: _N | None, now: _N | None) -> _N | None:
    """A counter's change (None: not known)."""
    return None if before is None or now is None else now - before


def _next_batch(source: Iterator[Any], size: int) -> Iterator[Any] | None:
    """The next ``size`` items of ``source`` (fewer at its end; None: it ended), read as they run, not before:
    a source that feeds workers meanwhile reads between them."""
    first = next(source, _END)
    return None if first is _END else itertools.chain((first,), itertools.islice(source, size - 1))


def sample_serially(
    func: Callable[[Any], Any],
    source: Iterator[Any],
    n_items: int | None,
    clocks: Clocks,
    capture_errors: bool,
    results: list[Any],
    check_deadline: Callable[[], object],
    meter: CShare | None = None,
    watch: FirstItemWatch | None = None,
) -> tuple[SerialSample, bool]:
    """Run and time batches until the sample is long enough; return it and whether the input ran out.

    The first item that raises (without ``capture_errors``) ends the input: its ``Failure`` is the last result.
    ``meter`` reads the timed batches' share of CPU time in C until it is done (its own time, ``slowed_s``, taken out).
    ``watch`` may start the carry on the first item's: the sample ends with it, timed on its thread's CPU clock alone.
    """
    sample = SerialSample()
    size = 1
    while not sample_done(sample, n_items):
        check_deadline()
        batch = _next_batch(source, size)
        if batch is None:
            return sample, True
        modules, ran = len(sys.modules), len(results)
        slowed = 0.0 if meter is None else meter.slowed_s
        watching = watch.at(ran + 1) if watch is not None and not sample.count and size == 1 else None
        with watching or nullcontext():  # its thread starts and ends outside the timings and the meter
            q0, v0, w0, c0, p0 = clocks.queued(), clocks.waits(), clocks.wall(), clocks.thread(), clocks.process()
            with meter or nullcontext():
                failed = run_kept(func, batch, results, capture_errors)
            q1, v1, w1, c1, p1 = clocks.queued(), clocks.waits(), clocks.wall(), clocks.thread(), clocks.process()
        carried = watching is not None and watching.carrying is not None
        if failed:  # no item runs after a failure
            return sample, True
        slowed = 0.0 if meter is None else meter.slowed_s - slowed  # the meter's own time, taken out
        wall, count = w1 - w0 - slowed, len(results) - ran
        if not carried and warmup_batch(sample, third_party_imports(modules)):
            if meter is not None:
                meter.reset()
            sample = attrs.evolve(sample, warmup_items=sample.warmup_items + count, warmup_s=sample.warmup_s + wall)
            continue
        cpu = c1 - c0 - slowed
        process = cpu if carried else p1 - p0 - slowed
        waits, queued = _since(v0, v1), _since(q0, q1)
        sample = add_batch(sample, count, max(wall, 0.0), max(cpu, 0.0), max(process, 0.0), waits, queued)
        if carried:  # the carry's threads go on from the next item
            return sample, False
        size = sample_batch_size(sample, size, n_items)
    return sample, False
