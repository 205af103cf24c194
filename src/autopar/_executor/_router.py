"""Where auto sends ``Executor.submit``'s calls: timed on threads first, then where a rule says.

Data flow::

    submit(fn, ...) -> route(fn): the choice for fn's code, or None while it is still timed
    None            -> timed(fn, args, kwargs) on the executor's threads: wall and thread CPU
                       -> record(...): summed into a Probe per function, with whether
                          the function, its arguments and its results pickle
    PROBE_CALLS recorded  -> rule(cpu_s, wall_s, calls, facts, shippable):
                             "threads" or a process start method for every later call

The router owns the measuring and the bookkeeping, under its own lock; the
rule is a pure function passed in (``_core._submit.choose_for_submit`` by default).
"""

from __future__ import annotations

import pickle
import threading
import time
from typing import TYPE_CHECKING, Any

import attrs

from .._core._identity import function_identity
from .._core._submit import PROBE_CALLS
from .._platform import probe_platform
from .._serialize import shipping

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable
    from typing import TypeAlias

    from .._model import PlatformFacts

    #: ``(cpu_s, wall_s, calls, facts, shippable)`` -> a strategy for the function's later calls,
    #: or None for "not yet": the router then times another round of calls and asks again.
    SubmitRule: TypeAlias = Callable[[float, float, int, PlatformFacts, bool], "str | None"]

__all__ = ["Probe", "SubmitRouter", "pickles"]


def pickles(obj: object) -> bool:
    """Whether ``obj`` pickles, as a process pool would send it."""
    try:
        pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return False
    return True


@attrs.define
class Probe:
    """What auto measured of one function's calls on threads."""

    calls: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    shippable: bool = True


class SubmitRouter:
    """Times the first calls of each function on threads, then routes its later calls by ``rule``.

    A call already submitted never moves, so no call runs twice.

    Args:
        rule: where a function's later calls go, from its timed calls (see ``SubmitRule``).
        exclude_fork: leave ``fork`` out of the start methods the rule sees
            (``ProcessPoolExecutor`` rejects ``max_tasks_per_child`` with fork).
    """

    def __init__(self, rule: SubmitRule, *, exclude_fork: bool) -> None:
        self._rule = rule
        self._exclude_fork = exclude_fork
        self._lock = threading.Lock()
        self._probes: dict[Hashable, Probe] = {}
        self._choices: dict[Hashable, str] = {}
        self._timed_running = 0  # calls being timed right now: how many share the GIL

    def route(self, fn: Callable[..., Any]) -> str | None:
        """The strategy for a call of ``fn``, or None while its calls are still timed on threads."""
        key = function_identity(fn)
        with self._lock:
            return self._choices.get(key)

    def timed(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run ``fn(*args, **kwargs)`` (on a pool thread), timing it for the rule; return its result."""
        with self._lock:
            self._timed_running += 1
            running_at_start = self._timed_running
        wall_0, cpu_0 = time.perf_counter(), time.thread_time()
        try:
            result = fn(*args, **kwargs)
        finally:
            wall_s, cpu_s = time.perf_counter() - wall_0, time.thread_time() - cpu_0
            with self._lock:
                sharing = (running_at_start + self._timed_running) / 2
                self._timed_running -= 1
        # k threads of GIL-bound work each get about 1/k of the wall clock: scale back to the
        # CPU the call would have used alone, capped at its wall time.
        self.record(function_identity(fn), fn, (args, kwargs, result), min(cpu_s * sharing, wall_s), wall_s)
        return result

    def record(self, key: Hashable, fn: Callable[..., Any], data: object, cpu_s: float, wall_s: float) -> None:
        """Add one timed call of ``fn`` (``data``: its arguments and result); after the last one, ask the rule."""
        with self._lock:
            if key in self._choices:
                return
            probe = self._probes.setdefault(key, Probe())
            if probe.calls >= PROBE_CALLS:
                return  # enough calls; another thread is choosing
            probe.calls += 1
            probe.cpu_s += cpu_s
            probe.wall_s += wall_s
            calls = probe.calls
        shippable = pickles(data)
        if calls == PROBE_CALLS:
            shippable = shippable and shipping(fn).shippable
        with self._lock:
            probe.shippable = probe.shippable and shippable
            if calls < PROBE_CALLS:
                return
        choice = self._rule(probe.cpu_s, probe.wall_s, probe.calls, self._facts(), probe.shippable)
        with self._lock:
            del self._probes[key]
            if choice is not None:
                self._choices[key] = choice

    def _facts(self) -> PlatformFacts:
        """Today's platform, as the rule sees it: threads running now decide whether fork is safe."""
        facts = probe_platform()
        if self._exclude_fork:
            facts = attrs.evolve(facts, start_methods=tuple(m for m in facts.start_methods if m != "fork"))
        return facts
