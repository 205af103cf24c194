"""How much of an item's CPU time runs in C functions: the only code that may release the GIL.

Before a thread probe, calibration runs a few milliseconds of items under
``sys.setprofile``, which reports every call into a C function and its return.
The calling thread's CPU time between the two is C code's; the rest ran Python
bytecode, which holds the GIL on an interpreter that has one.  Items that spend
almost none of their CPU in C cannot run in parallel on threads, and the probe,
which would keep the other cores idle while it runs, is skipped
(``_core._sampling.probe_after_profile``).  C code that calls back into Python
(``sorted`` with a ``key``) counts as C only until its first callback.
"""

from __future__ import annotations

import itertools
import sys
import time
from typing import TYPE_CHECKING, Any

from ._sample import run_kept

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType

__all__ = ["c_cpu_share"]


def c_cpu_share(
    func: Callable[[Any], Any],
    source: Iterator[Any],
    count: int,
    capture_errors: bool,
    results: list[Any],
    thread_time: Callable[[], float] = time.thread_time,
) -> tuple[float | None, bool]:
    """Run the next ``count`` items of ``source`` under a profiler, keeping their results in ``results``.

    Returns the share of their CPU time spent in C functions (None if nothing ran,
    the items took no measurable CPU time, or a profiler is already set: the user's
    is never replaced), and whether the input ended: it ran out, or an item raised
    (without ``capture_errors``; its ``Failure`` is then the last result, as in the serial sample).
    """
    if sys.getprofile() is not None:
        return None, False
    batch = list(itertools.islice(source, count))
    if not batch:
        return None, True
    in_c = [0.0]
    entered: list[float] = []

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "c_call":
            entered[:] = [thread_time()]
        elif entered and event in ("c_return", "c_exception", "call"):
            in_c[0] += thread_time() - entered.pop()

    began = thread_time()
    sys.setprofile(profile)
    try:
        failed = run_kept(func, batch, results, capture_errors)
    finally:
        sys.setprofile(None)
    if failed:
        return None, True
    total = thread_time() - began
    return (in_c[0] / total if total > 0 else None), len(batch) < count
