"""How records read: seconds with their unit, the ``Decision`` table, JSON-ready values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._model import Decision

__all__ = ["PROBE_THREAD", "format_seconds", "jsonable", "render_decision", "render_outcome"]

#: The rows of the thread probe's threads in a report are named this, then the thread's number.
PROBE_THREAD = "thread "


def format_seconds(seconds: float | None) -> str:
    """Seconds in the unit that reads best: us, ms or s ("-" for None)."""
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def render_decision(decision: Decision) -> str:
    """The decision as a table of every candidate, its measurements and its reasons."""
    head = f"autopar decision: {decision.strategy} with {decision.workers} worker(s), chunksize {decision.chunksize}"
    if decision.forced:
        head += " (forced)"
    lines = [head]
    if decision.candidates:
        lines.append(f"  {'candidate':<12} {'workers':>7} {'chunksize':>9} {'predicted':>10}  note")
        for c in sorted(decision.candidates, key=lambda c: c.predicted_s):
            mark = "*" if (c.strategy, c.workers) == (decision.strategy, decision.workers) else " "
            lines.append(
                f"{mark} {c.strategy:<12} {c.workers:>7} {c.chunksize:>9} {format_seconds(c.predicted_s):>10}  {c.note}"
            )
    m = decision.measurements
    if m is not None and m.sampled:
        lines.append(
            f"  measured on {m.sampled} item(s): {format_seconds(m.item_wall_s)} wall, "
            f"{format_seconds(m.item_cpu_s)} thread CPU, {format_seconds(m.item_process_cpu_s)} process CPU per item"
        )
        probe = f", {m.thread_probe_workers} threads probed" if m.thread_probe_workers else ""
        early = f", {m.speculative_items} item(s) in process workers meanwhile" if m.speculative_items else ""
        warmup = f", the first {m.warmup_items} untimed (it imported modules)" if m.warmup_items else ""
        lines.append(f"  calibration took {format_seconds(m.calibration_s)}{probe}{early}{warmup}")
    lines.extend(f"  - {r}" for r in decision.reasons)
    return "\n".join(lines)


def predicted_call_s(decision: Decision) -> float | None:
    """The call's predicted wall time: the decision's for the rest, plus calibration where this call calibrated."""
    m = decision.measurements
    if decision.predicted_s is None or m is None:
        return None
    return decision.predicted_s + (m.calibration_s if m.sampled else 0.0)  # cached measurements: sampled 0


def render_outcome(decision: Decision, elapsed_s: float, items: int) -> str | None:
    """A call's wall time against the prediction, for the log (None for a decision with no prediction)."""
    m, predicted_s = decision.measurements, predicted_call_s(decision)
    if predicted_s is None or m is None or decision.predicted_s is None:
        return None
    line = f"autopar: {decision.strategy} took {format_seconds(elapsed_s)} for {items} item(s)"
    if m.sampled:
        line += f", calibration {format_seconds(m.calibration_s)} on {m.sampled} item(s) included"
    line += f"; predicted {format_seconds(predicted_s)}"
    if m.sampled:
        line += f" ({format_seconds(decision.predicted_s)} for the rest)"
    return line + (f", {(elapsed_s - predicted_s) / predicted_s:+.0%} off" if predicted_s > 0 else "")


def jsonable(_inst: Any, _field: Any, value: Any) -> Any:
    """An attrs ``value_serializer``: frozensets become sorted lists, mappings dicts."""
    if isinstance(value, frozenset):
        return sorted(list(v) if isinstance(v, tuple) else v for v in value)
    if isinstance(value, Mapping):
        return dict(value)
    return value
