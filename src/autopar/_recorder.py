"""Recording one call for its report (``report=True``), and the last report of each thread.

Who feeds a ``Recorder``, and when::

    Call            calibrated(...)   the items timed in the caller before the decision
    serial batches  ran("caller", ...) each batch the caller runs itself
    pools           worker(...)       each worker's creation, start and initializer (once per worker)
                    ran(...)          each chunk a worker ran, with its ChunkTiming
                    lost(...)         a chunk whose worker died or was killed (no timing came back)
    Dispatch        incident(...)     a crash, a timeout, an item's exception, a retry
    _run            finish(...)       -> Report, kept per thread for ``last_report()``

Free when off: a call without ``report=True`` creates no recorder, and every
hook above sits behind one ``recorder is not None`` test per call or per chunk;
no timestamp is taken and nothing is allocated for it.

The clock is ``time.perf_counter()``: on Linux and macOS it reads the
system-wide monotonic clock (``CLOCK_MONOTONIC``, ``mach_absolute_time``) and on
Windows ``QueryPerformanceCounter``, all shared by every process of the machine,
so a process worker's stamps compare with its caller's.

Thread workers call ``ran`` from their own threads; every note is a single
``list.append`` or ``dict.setdefault``, which need no lock.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import TYPE_CHECKING

from ._errors import WorkerCrashedError
from ._render import PROBE_THREAD
from ._worker import SLOWEST_KEPT, ChunkTiming

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._model import Decision
    from ._report import Incident, Report, WorkerReport

__all__ = ["CALLER", "Recorder", "keep", "last_report"]

#: The row of items run in the calling thread: calibration, and serial runs.
CALLER = "caller"

_local = threading.local()


def last_report() -> Report | None:
    """The report of the last call this thread ran with ``report=True``, or None before any.

    A report of ``imap`` (and ``Executor.map``) is complete once its iterator is exhausted or closed.
    """
    report: Report | None = getattr(_local, "report", None)
    return report


def keep(report: Report) -> None:
    """Make ``report`` this thread's ``last_report()``."""
    _local.report = report


class _Notes:
    """What is known about one worker so far (``perf_counter`` stamps)."""

    __slots__ = ("began", "bytes_in", "bytes_out", "created", "ended", "ready", "spans")

    def __init__(self) -> None:
        self.created: float | None = None
        self.began: float | None = None
        self.ready: float | None = None
        self.ended: float | None = None
        self.spans: list[tuple[int, int, float, float, float, bool]] = []  # start, items, began, ended, sent, failed
        self.bytes_in = 0
        self.bytes_out = 0


def _kind(error: BaseException) -> str:
    if isinstance(error, WorkerCrashedError):
        return "crash"
    return "timeout" if isinstance(error, TimeoutError) else "error"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class Recorder:
    """The notes of one recorded call, turned into a ``Report`` by ``finish``."""

    def __init__(self, call: str) -> None:
        self.call = call
        self.started = time.perf_counter()
        self._workers: dict[str, _Notes] = {}
        self._slowest: list[tuple[float, int]] = []
        self._incidents: list[Incident] = []
        self._calibration: tuple[float, float, int] | None = None
        self._pool_ended: float | None = None

    def _notes(self, name: str) -> _Notes:
        return self._workers.setdefault(name, _Notes())

    def worker(self, name: str, created: float, began: float, ready: float, ended: float | None = None) -> None:
        """When worker ``name`` was created, began running autopar code, finished its initializer, and ended."""
        notes = self._notes(name)
        notes.created, notes.began, notes.ready = created, began, ready
        if ended is not None:
            notes.ended = ended

    def ran(
        self,
        name: str,
        start: int,
        timing: ChunkTiming,
        *,
        sent: float | None = None,
        failed: bool = False,
        bytes_in: int = 0,
        bytes_out: int = 0,
    ) -> None:
        """Worker ``name`` ran the chunk starting at input position ``start``; its outcome reached the caller at ``sent``."""
        notes = self._notes(name)
        ended = timing.ended
        notes.spans.append((start, timing.items, timing.began, ended, ended if sent is None else sent, failed))
        notes.bytes_in += bytes_in
        notes.bytes_out += bytes_out
        self._slowest.extend(timing.slowest)

    def lost(self, name: str, start: int, items: int, began: float, ended: float, *, bytes_in: int = 0) -> None:
        """Worker ``name`` died (or was killed) running a chunk; ``items`` ran to an end, the failed one included."""
        notes = self._notes(name)
        notes.spans.append((start, items, began, ended, ended, True))
        notes.bytes_in += bytes_in

    def set_aside(self, prefix: str = "early ") -> None:
        """The workers so far belong to a pool the call does not go on with: rename their rows, ending them now.

        A first call's speculative pool runs its first items; when the decision is another pool,
        whose workers take the same names, its rows would otherwise merge with theirs.
        """
        now = time.perf_counter()
        rows: dict[str, _Notes] = {}
        for name, notes in self._workers.items():
            if name != CALLER:
                notes.ended = notes.ended or now
                name = prefix + name
            rows[name] = notes
        self._workers = rows

    def calibrated(
        self,
        began: float,
        ended: float,
        items: int,
        positions: Sequence[int],
        threads: Sequence[tuple[int, int, float, float]] = (),
        *,
        in_caller: int | None = None,
    ) -> None:
        """Calibration ran from ``began`` to ``ended`` and measured ``items`` items before the decision.

        The caller ran ``in_caller`` of them (None: all), the first ``in_caller`` input ``positions`` (not
        consecutive where early workers took items between them), until
        the thread probe began; ``threads`` holds (thread, input position, began, ended) of
        each item the probe's threads ran (during calibration or, carrying on, after it), each
        thread in a row ``thread N``.
        """
        self._calibration = (began, ended, items)
        in_caller = items if in_caller is None else in_caller
        if in_caller:
            probed = min((span[2] for span in threads), default=ended)
            each, at = (probed - began) / in_caller, began  # runs apart share the caller's time by their items
            for position, count in _runs(positions[:in_caller]):
                self._notes(CALLER).spans.append((position, count, at, at + count * each, at + count * each, False))
                at += count * each
        rows: dict[int, list[tuple[int, float, float]]] = {}
        for thread, position, item_began, item_ended in threads:
            rows.setdefault(thread, []).append((position, item_began, item_ended))
        for thread, spans in sorted(rows.items()):
            name = f"{PROBE_THREAD}{thread}"
            first, last = min(s[1] for s in spans), max(s[2] for s in spans)
            self.worker(name, first, first, first, ended=last)
            for position, item_began, item_ended in spans:
                timing = ChunkTiming(item_began, item_ended, 1, ((item_ended - item_began, position),))
                self.ran(name, position, timing)

    def incident(self, index: int | None, error: BaseException, *, retried: bool = False) -> None:
        """The item at input position ``index`` failed with ``error`` (and runs again when ``retried``)."""
        if isinstance(error, WorkerCrashedError) and error.index is not None:
            index = error.index  # the worker's slot named the item that was running
        from ._report import Incident  # a call that is not reported does not import the report's classes

        message = _first_line(error)
        self._incidents.append(Incident(kind=_kind(error), index=index, message=message))
        if retried:
            self._incidents.append(Incident(kind="retry", index=index, message=f"runs again after {message}"))

    def pool_ended(self) -> None:
        """The call is done with its pool: its workers' time in the call ends here."""
        self._pool_ended = time.perf_counter()

    def finish(self, decision: Decision | None, items: int, error: BaseException | None = None) -> Report:
        """The report of the call, which ends now."""
        from ._report import Report, SlowItem

        ended = time.perf_counter()
        calibration = self._calibration
        cal_s, cal_items = (calibration[1] - calibration[0], calibration[2]) if calibration else (0.0, 0)
        workers = sorted(self._workers.items(), key=lambda kv: _row_order(kv[0]))
        slowest = heapq.nlargest(SLOWEST_KEPT, self._slowest)
        return Report(
            call=self.call,
            decision=decision,
            wall_s=ended - self.started,
            items=items,
            calibration_s=cal_s,
            calibration_items=cal_items,
            workers=tuple(self._worker_report(name, notes, ended) for name, notes in workers),
            slowest=tuple(SlowItem(index=i, seconds=s) for s, i in slowest),
            incidents=tuple(self._incidents),
            error=None if error is None else repr(error),
        )

    def _worker_report(self, name: str, notes: _Notes, call_ended: float) -> WorkerReport:
        """The phases of one worker, measured from its stamps: they partition its lifetime within the call."""
        from ._report import Span, WorkerReport

        start = self.started
        end = notes.ended or (call_ended if name == CALLER else self._pool_ended) or call_ended
        spans = sorted(notes.spans, key=lambda s: s[2])
        created = notes.created if notes.created is not None else (spans[0][2] if spans else start)
        if created < start or name == CALLER:  # a pool reused from an earlier call: no start-up in this one
            created = began = ready = start
        else:
            began = max(notes.began or created, created)
            ready = max(notes.ready or began, began)
        waiting, mark = 0.0, ready
        for span in spans:
            waiting += max(span[2] - mark, 0.0)
            mark = max(mark, span[4])
        waiting += max(end - mark, 0.0)
        calibration = self._calibration
        return WorkerReport(
            name=name,
            began_s=created - start,
            lifetime_s=max(end, mark) - created,
            start_up_s=began - created,
            init_s=ready - began,
            waiting_s=waiting,
            working_s=sum(s[3] - s[2] for s in spans),
            sending_s=sum(s[4] - s[3] for s in spans),
            items=sum(s[1] for s in spans),
            chunks=len(spans),
            bytes_in=notes.bytes_in,
            bytes_out=notes.bytes_out,
            spans=tuple(
                Span(
                    start=s[0],
                    items=s[1],
                    began_s=s[2] - start,
                    ended_s=s[3] - start,
                    sent_s=s[4] - start,
                    calibration=name == CALLER and calibration is not None and s[2] == calibration[0],
                    failed=s[5],
                )
                for s in spans
            ),
        )


def _row_order(name: str) -> tuple[int, int, str]:
    """The caller first, then workers by number, then the thread probe's threads by number."""
    if name == CALLER:
        return (0, 0, name)
    number = name.rpartition(" ")[2]
    return (2 if name.startswith(PROBE_THREAD) else 1, int(number) if number.isdigit() else 0, name)


def _runs(positions: Sequence[int]) -> list[tuple[int, int]]:
    """(first position, items) of each run of consecutive ``positions``."""
    runs: list[tuple[int, int]] = []
    for position in positions:
        if runs and sum(runs[-1]) == position:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((position, 1))
    return runs
