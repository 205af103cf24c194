"""Auto's choice for ``autopar.Executor.submit``: where a function's later calls run, from its first ones.

Data flow::

    submit(fn, ...)   -> _identity(fn): the key, the function's code
    first calls       -> run on the executor's threads, timed; summed per key by the executor's
                         SubmitRouter, with whether the function, arguments and results pickle
    _PROBE_CALLS done -> _choose_for_submit(cpu_s, wall_s, calls, facts, shippable):
                         "threads" or a process start method, for every later call

The rule is a function of the measurements and ``PlatformFacts`` only; the
executor's router (``_executor/_router.py``) keeps the probes and the choices,
under its own lock.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from ._safety import auto_process_methods

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from ._model import PlatformFacts

#: Completed calls of a function timed on threads before auto chooses where its later calls run.
_PROBE_CALLS = 3
#: Thread CPU over wall at or above which a call counts as work that holds the GIL.
_GIL_BOUND_RATIO = 0.8
#: Mean seconds per call below which sending a call to a process costs more than it saves.
_MIN_PROCESS_CALL_S = 0.005


def _choose_for_submit(cpu_s: float, wall_s: float, calls: int, facts: PlatformFacts, shippable: bool) -> str:
    """Where auto runs a function's later submitted calls, from its first ones timed on threads.

    Args:
        cpu_s: thread CPU seconds of the timed calls, corrected for GIL contention.
        wall_s: wall seconds of the same calls.
        calls: how many calls were timed.
        facts: the platform, for the GIL and the safe start methods.
        shippable: the function, its arguments and its results pickle.

    Returns:
        ``""`` while fewer than ``_PROBE_CALLS`` calls were timed, else ``"threads"``
        or the process start method to use.
    """
    if calls < _PROBE_CALLS:
        return ""
    if not facts.gil_enabled or facts.cpu_count < 2 or wall_s <= 0:
        return "threads"
    if cpu_s / wall_s < _GIL_BOUND_RATIO or wall_s / calls < _MIN_PROCESS_CALL_S:
        return "threads"  # it waits (I/O, sleep, locks) or is too short to pay for the trip
    methods = auto_process_methods(facts)
    if not shippable or not methods:
        return "threads"
    return methods[0]


def _identity(fn: Callable[..., Any]) -> Hashable:
    """What auto keys a function's measurements by: its code, so no instance or argument is kept alive."""
    target: Any = getattr(fn, "__func__", fn)  # a bound method: its function
    while isinstance(target, functools.partial):
        target = target.func
    code = getattr(target, "__code__", None)
    if code is not None:
        return code  # type: ignore[no-any-return]
    module = getattr(target, "__module__", None) or type(target).__module__
    return (module, getattr(target, "__qualname__", None) or type(target).__qualname__)
