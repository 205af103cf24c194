"""The timeline of a recorded call, drawn with matplotlib (the ``plot`` extra): ``Report.plot``.

One row per worker (the caller on top when it ran items), time from the call's
start on the x axis::

    caller    [calibration]                                       hatched: calibration items
    worker 0  ░start-up░init [chunk][chunk]·[chunk]  [chunk]      · sending, gaps waiting
    worker 1  ░start-up░init [chunk] [chunk][FAILED]              red: an item failed, crashed or timed out
                                               |predicted  |actual

matplotlib is imported here only, when a report is drawn, through ``Figure``
rather than ``pyplot``: no global figure, no GUI backend, safe from any thread.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ._report import Report, WorkerReport

__all__ = ["draw"]

_WORKING = "#4c72b0"
_CALIBRATION = "#dd8452"
_FAILED = "#c44e52"
_SENDING = "#8c8c8c"
_START_UP = "#c7c7c7"
_INIT = "#b5a6d6"
_BAR = 0.7


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError as exc:
        msg = "Report.plot() needs matplotlib: pip install 'autopar[plot]'"
        raise ModuleNotFoundError(msg, name="matplotlib") from exc


def _row(ax: Axes, y: int, worker: WorkerReport) -> None:
    """Draw one worker: start-up and initializer, then each chunk and the sending of its results."""
    half = _BAR / 2
    if worker.start_up_s > 0:
        ax.broken_barh([(worker.began_s, worker.start_up_s)], (y - half, _BAR), facecolors=_START_UP)
    if worker.init_s > 0:
        ax.broken_barh([(worker.began_s + worker.start_up_s, worker.init_s)], (y - half, _BAR), facecolors=_INIT)
    for kind, colour, hatch in (("ok", _WORKING, None), ("cal", _CALIBRATION, "//"), ("failed", _FAILED, None)):
        bars = [
            (s.began_s, max(s.ended_s - s.began_s, 0.0))
            for s in worker.spans
            if kind == ("failed" if s.failed else "cal" if s.calibration else "ok")
        ]
        if bars:
            ax.broken_barh(bars, (y - half, _BAR), facecolors=colour, edgecolor="white", linewidth=0.3, hatch=hatch)
    sending = [(s.ended_s, s.sent_s - s.ended_s) for s in worker.spans if s.sent_s > s.ended_s]
    if sending:
        ax.broken_barh(sending, (y - half / 3, _BAR / 3), facecolors=_SENDING)


def _legend(ax: Axes, report: Report) -> None:
    from matplotlib.patches import Patch

    handles: list[Artist] = [
        Patch(facecolor=_START_UP, label="start-up"),
        Patch(facecolor=_INIT, label="initializer"),
        Patch(facecolor=_WORKING, label="working (a chunk)"),
        Patch(facecolor=_CALIBRATION, hatch="//", label="calibration"),
        Patch(facecolor=_FAILED, label="failed"),
        Patch(facecolor=_SENDING, label="sending results"),
        Patch(facecolor="white", edgecolor=_START_UP, label="waiting (a gap)"),
    ]
    predicted = report.predicted_s
    if predicted is not None:
        handles.append(ax.axvline(predicted, color="black", linestyle="--", label="predicted wall"))
    handles.append(ax.axvline(report.wall_s, color="black", label="actual wall"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=4, fontsize="small")


def draw(report: Report, path: str | os.PathLike[str] | None = None, *, title: str | None = None) -> Figure:
    """Draw ``report``'s timeline; save it to ``path`` (format from its suffix) when given; return the figure."""
    _require_matplotlib()
    import matplotlib
    from matplotlib.figure import Figure

    rows = report.workers
    fig = Figure(figsize=(10, 2.2 + 0.45 * max(len(rows), 1)), layout="constrained")
    ax = fig.add_subplot()
    for y, worker in enumerate(rows):
        _row(ax, y, worker)
    ax.set_yticks(range(len(rows)), [w.name for w in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)  # the first row on top
    ax.set_xlim(0, max(report.wall_s, report.predicted_s or 0.0) * 1.02 or 1.0)
    ax.set_xlabel("seconds since the call began")
    d = report.decision
    heading = f"{report.call}: {report.items} items" + ("" if d is None else f", {d.strategy} x {d.workers}")
    ax.set_title(title or f"{heading}, efficiency {report.efficiency:.0%}", fontsize="medium")
    _legend(ax, report)
    if path is not None:
        fmt = os.fspath(path).rpartition(".")[2].lower() or "png"
        # SVG keeps its labels as text, so they stay searchable and sharp.
        with matplotlib.rc_context({"svg.fonttype": "none"}):
            fig.savefig(path, format=fmt, dpi=120)
    return fig
