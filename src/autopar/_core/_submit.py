"""Where ``Executor.submit`` sends a function's later calls under auto, from its first ones.

``Executor`` times each function's first ``PROBE_CALLS`` calls on threads
(wall and thread CPU, corrected for GIL contention), then asks
``choose_for_submit`` once; a call already submitted never moves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._safety import usable_process_methods
from ._workload import COMPUTING_CPU_SHARE

if TYPE_CHECKING:
    from .._model import PlatformFacts

__all__ = ["MIN_PROCESS_CALL_S", "PROBE_CALLS", "choose_for_submit"]

#: Completed calls of a function timed on threads before auto chooses where its later calls run.
PROBE_CALLS = 3
#: Mean seconds per call below which sending a call to a process costs more than it saves:
#: a process round trip with pickling costs about a millisecond.
MIN_PROCESS_CALL_S = 0.005


def choose_for_submit(cpu_s: float, wall_s: float, calls: int, facts: PlatformFacts, shippable: bool) -> str | None:
    """Where auto runs a function's later submitted calls, from its first ones timed on threads.

    Args:
        cpu_s: thread CPU seconds of the timed calls, corrected for GIL contention.
        wall_s: wall seconds of the same calls.
        calls: how many calls were timed.
        facts: the platform, for the GIL and the safe start methods.
        shippable: the function, its arguments and its results pickle.

    Returns:
        None while fewer than ``PROBE_CALLS`` calls were timed, else ``"threads"``
        or the process start method to use.
    """
    if calls < PROBE_CALLS:
        return None
    if not facts.gil_enabled or facts.cpu_count < 2 or wall_s <= 0:
        return "threads"
    if cpu_s / wall_s < COMPUTING_CPU_SHARE or wall_s / calls < MIN_PROCESS_CALL_S:
        return "threads"  # it waits (I/O, sleep, locks) or is too short to pay for the trip
    methods = usable_process_methods(facts, shippable=shippable, picklable=shippable)
    return methods[0] if methods else "threads"
