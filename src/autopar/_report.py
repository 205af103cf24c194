"""The record of one recorded call (``report=True``): what autopar chose, what happened, and where time went.

A ``Report`` is plain data, made by ``_recorder`` when the call ends: every
time is in seconds, and every moment (``began_s``, ``ended_s``) counts from the
call's start.  Per worker, the phases partition its lifetime within the call
(mpire's names where they mean the same)::

    start_up | init | waiting | working | sending | waiting | working | sending | ... | waiting
    created    ran the          for a     the        the result
               initializer      task      items      reaches the caller

``str(report)`` is a table, ``to_dict()`` is JSON-ready, ``plot()`` draws the timeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from ._render import PROBE_THREAD, format_seconds, jsonable

if TYPE_CHECKING:
    import os

    from matplotlib.figure import Figure

    from ._model import Decision

__all__ = ["EFFICIENCY_WARNING_BELOW", "PROBE_THREAD", "Incident", "Report", "SlowItem", "Span", "WorkerReport"]

#: Below this working ratio ``str(report)`` warns, as mpire's insights do.
EFFICIENCY_WARNING_BELOW = 0.8


@attrs.frozen(kw_only=True)
class Span:
    """One chunk as a worker ran it: items ``start`` to ``start + items - 1``."""

    start: int
    #: Items that ran to an end (a result, an exception, a crash or a timeout).
    items: int
    #: Working began and ended; ``sent_s``: its outcome reached the caller (``ended_s`` where nothing is sent).
    began_s: float
    ended_s: float
    sent_s: float
    #: Calibration items, timed in the caller before the decision.
    calibration: bool = False
    #: An item raised, crashed its worker or timed out.
    failed: bool = False


@attrs.frozen(kw_only=True)
class WorkerReport:
    """Where one worker's time went during the call; the phases add up to ``lifetime_s``."""

    #: ``"caller"`` (calibration, serial runs) or ``"worker N"``.
    name: str
    began_s: float
    lifetime_s: float
    #: From the start of the process or thread to its first line of autopar code (0 for a pool reused from an earlier call).
    start_up_s: float
    #: Running the initializer.
    init_s: float
    #: Idle, waiting for a task (or, for the caller, deciding and collecting results).
    waiting_s: float
    #: Running items.
    working_s: float
    #: From the end of a chunk until the caller holds its results: pickling, the pipe, and the caller's
    #: own delay in reading them (process workers only).
    sending_s: float
    #: Items that ran to an end, and chunks.
    items: int
    chunks: int
    #: Bytes of tasks sent to the worker, and of results received from it (process workers only).
    bytes_in: int = 0
    bytes_out: int = 0
    spans: tuple[Span, ...] = ()

    @property
    def phases(self) -> dict[str, float]:
        """The phases by mpire's names (plus ``sending``), in seconds."""
        return {
            "start_up": self.start_up_s,
            "init": self.init_s,
            "waiting": self.waiting_s,
            "working": self.working_s,
            "sending": self.sending_s,
        }


@attrs.frozen(kw_only=True)
class SlowItem:
    """One of the slowest items: its input position and the seconds it ran."""

    index: int
    seconds: float


@attrs.frozen(kw_only=True)
class Incident:
    """A crash, a timeout, an item's exception, or a retry, with the input position of its item."""

    #: ``"crash"``, ``"timeout"``, ``"error"`` or ``"retry"``.
    kind: str
    index: int | None
    message: str


@attrs.frozen(kw_only=True)
class Report:
    """What happened during one ``map``, ``imap`` or ``Executor.map`` call recorded with ``report=True``.

    ``str(report)`` renders a table, ``to_dict()`` a JSON-ready dictionary, ``plot(path)`` a timeline.
    """

    #: ``"map"`` or ``"imap"`` (``Executor.map`` and ``aimap`` run as ``imap``).
    call: str
    decision: Decision | None
    wall_s: float
    #: Items whose result (or exception) the call produced.
    items: int
    calibration_s: float = 0.0
    calibration_items: int = 0
    workers: tuple[WorkerReport, ...] = ()
    slowest: tuple[SlowItem, ...] = ()
    incidents: tuple[Incident, ...] = ()
    #: The exception that ended the call, if one did (its ``repr``).
    error: str | None = None

    @property
    def strategy(self) -> str | None:
        """The strategy that ran the call (None when it failed before deciding)."""
        return None if self.decision is None else self.decision.strategy

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why autopar chose the strategy (the decision's reasons)."""
        return () if self.decision is None else self.decision.reasons

    @property
    def predicted_s(self) -> float | None:
        """Predicted wall time of the whole call: calibration plus the decision's prediction for the rest."""
        if self.decision is None or self.decision.predicted_s is None:
            return None
        return self.calibration_s + self.decision.predicted_s

    @property
    def efficiency(self) -> float:
        """Working time of every row (calibration included) over workers x wall time.

        The workers are the decision's (a replaced worker takes the place of the one that died),
        or the thread probe's threads where more of them ran; without a decision, the rows other
        than the caller's, or the caller alone.
        """
        if not self.workers or self.wall_s <= 0:
            return 0.0
        if self.decision is not None:
            workers = max(self.decision.workers, sum(1 for w in self.workers if w.name.startswith(PROBE_THREAD)))
        else:
            workers = sum(1 for w in self.workers if w.name != "caller") or 1
        return sum(w.working_s for w in self.workers) / (workers * self.wall_s)

    @property
    def crashes(self) -> tuple[Incident, ...]:
        """Items whose worker died while running them."""
        return tuple(i for i in self.incidents if i.kind == "crash")

    @property
    def timeouts(self) -> tuple[Incident, ...]:
        """Items that ran past ``item_timeout``."""
        return tuple(i for i in self.incidents if i.kind == "timeout")

    @property
    def retries(self) -> tuple[Incident, ...]:
        """Items run again (``retries``)."""
        return tuple(i for i in self.incidents if i.kind == "retry")

    def __str__(self) -> str:
        return render_report(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary: the fields, the decision, and the derived figures."""
        data = attrs.asdict(self, recurse=True, value_serializer=jsonable)
        data["strategy"] = self.strategy
        data["predicted_s"] = self.predicted_s
        data["efficiency"] = self.efficiency
        for worker, record in zip(data["workers"], self.workers, strict=True):
            worker["phases"] = record.phases
        return data

    def plot(self, path: str | os.PathLike[str] | None = None, *, title: str | None = None) -> Figure:
        """Draw the timeline: a row per worker, a bar per chunk, the prediction as a line.

        Calibration chunks are hatched, failed chunks red.  The file's format follows
        the suffix of ``path`` (``.png``, ``.svg``, ``.pdf``); SVG keeps its labels as text.

        Returns:
            the matplotlib ``Figure`` (not attached to pyplot).

        Raises:
            ModuleNotFoundError: matplotlib is not installed (``pip install 'autopar[plot]'``).
        """
        from ._timeline import draw

        return draw(self, path, title=title)


def _percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def _heading(report: Report) -> list[str]:
    d = report.decision
    what = "no decision" if d is None else f"{d.strategy}, {d.workers} worker(s), chunksize {d.chunksize}"
    lines = [f"autopar report: {report.call} of {report.items} item(s) with {what}"]
    predicted = report.predicted_s
    wall = f"wall {format_seconds(report.wall_s)}"
    if predicted is not None and predicted > 0:
        off = (report.wall_s - predicted) / predicted
        wall += f", predicted {format_seconds(predicted)} ({off:+.0%})"
    lines.append("  " + wall)
    if report.calibration_items:
        lines.append(f"  calibration {format_seconds(report.calibration_s)}, {_calibration_items(report)}")
    lines.append(f"  efficiency {_percent(report.efficiency)} (working time over workers x wall)")
    lines.extend(f"  why: {reason}" for reason in report.reasons)
    return lines


def _calibration_items(report: Report) -> str:
    """Where calibration's items ran: the caller, and the thread probe's threads when they ran some."""
    in_caller = sum(s.items for w in report.workers if w.name == "caller" for s in w.spans if s.calibration)
    threads = sum(1 for w in report.workers if w.name.startswith(PROBE_THREAD))
    if not threads or in_caller >= report.calibration_items:
        return f"{report.calibration_items} item(s) in the caller"
    on_threads = report.calibration_items - in_caller
    return f"{report.calibration_items} item(s): {in_caller} in the caller, {on_threads} on {threads} probe threads"


_COLUMNS = ("worker", "lifetime", "start-up", "init", "waiting", "working", "sending", "items", "chunks", "in", "out")


def _worker_rows(report: Report) -> list[str]:
    rows = [
        (
            w.name,
            *(format_seconds(s) for s in (w.lifetime_s, w.start_up_s, w.init_s, w.waiting_s, w.working_s, w.sending_s)),
            str(w.items),
            str(w.chunks),
            _bytes(w.bytes_in),
            _bytes(w.bytes_out),
        )
        for w in report.workers
    ]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_COLUMNS)]
    table = [_COLUMNS, *rows]
    return [
        "  " + "  ".join(cell.rjust(widths[i]) if i else cell.ljust(widths[i]) for i, cell in enumerate(r))
        for r in table
    ]


def _bytes(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} GB"


def render_report(report: Report) -> str:
    """The report as a readable table, with the slowest items, the incidents and mpire's efficiency warning."""
    lines = _heading(report)
    if report.workers:
        lines += ["", *_worker_rows(report)]
    if report.slowest:
        slow = ", ".join(f"#{s.index} {format_seconds(s.seconds)}" for s in report.slowest)
        lines += ["", f"  slowest items: {slow}"]
    if report.incidents:
        lines.append("")
        for incident in report.incidents:
            where = "" if incident.index is None else f" item {incident.index}"
            lines.append(f"  {incident.kind}{where}: {incident.message}")
    if report.error is not None:
        lines.append(f"  the call ended with {report.error}")
    if report.workers and report.efficiency < EFFICIENCY_WARNING_BELOW:
        lines += ["", f"Efficiency warning: working ratio is < {EFFICIENCY_WARNING_BELOW:.0%}"]
    return "\n".join(lines)


# The public class reports the public path: in reprs and tracebacks, and when pickled by reference.
# Its parts (WorkerReport, Span, SlowItem, Incident) are reached through it, and keep this module's path.
Report.__module__ = "autopar"
