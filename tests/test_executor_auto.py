"""``autopar.Executor`` under auto: where ``submit`` sends a function's calls, and the rule it asks."""

from __future__ import annotations

import functools
import os
import pickle
import threading
from typing import TYPE_CHECKING, Any

import attrs
import pytest

import autopar
from autopar._core._identity import function_identity as _identity
from autopar._core._submit import choose_for_submit as _choose_for_submit
from autopar._executor._map import Star
from autopar._model import PlatformFacts
from helpers import countdown, pid_of, record_square, segfault_quietly_on_3, square

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


# -- auto: submit --------------------------------------------------------------------------------------------------------

LINUX = PlatformFacts(
    system="linux",
    python_version=(3, 12),
    start_methods=("fork", "forkserver", "spawn"),
    default_start_method="fork",
    cpu_count=4,
)
LINUX_THREADS = attrs.evolve(LINUX, python_threads=3)
WINDOWS = attrs.evolve(LINUX, system="windows", start_methods=("spawn",), default_start_method="spawn")
FREE_THREADED = attrs.evolve(LINUX, gil_enabled=False)
ONE_CPU = attrs.evolve(LINUX, cpu_count=1)
NO_PROCESSES = attrs.evolve(LINUX, start_methods=())


@pytest.mark.parametrize(
    ("cpu_s", "wall_s", "calls", "facts", "shippable", "expected"),
    [
        pytest.param(0.3, 0.3, 2, LINUX, True, None, id="fewer-than-3-calls-undecided"),
        pytest.param(0.3, 0.3, 3, LINUX, True, "fork", id="gil-bound-single-thread-linux-fork"),
        pytest.param(0.3, 0.3, 3, LINUX_THREADS, True, "forkserver", id="gil-bound-threads-running-forkserver"),
        pytest.param(0.3, 0.3, 3, WINDOWS, True, "spawn", id="gil-bound-windows-spawn"),
        pytest.param(0.24, 0.3, 3, LINUX, True, "fork", id="ratio-exactly-0.8-processes"),
        pytest.param(0.23, 0.3, 3, LINUX, True, "threads", id="ratio-below-0.8-threads"),
        pytest.param(0.003, 0.3, 3, LINUX, True, "threads", id="waiting-io-threads"),
        pytest.param(0.015, 0.015, 3, LINUX, True, "fork", id="mean-exactly-5ms-processes"),
        pytest.param(0.012, 0.012, 3, LINUX, True, "threads", id="short-calls-threads"),
        pytest.param(0.3, 0.3, 3, LINUX, False, "threads", id="not-picklable-threads"),
        pytest.param(0.3, 0.3, 3, FREE_THREADED, True, "threads", id="free-threaded-threads"),
        pytest.param(0.3, 0.3, 3, ONE_CPU, True, "threads", id="one-cpu-threads"),
        pytest.param(0.3, 0.3, 3, NO_PROCESSES, True, "threads", id="no-start-method-threads"),
        pytest.param(0.0, 0.0, 3, LINUX, True, "threads", id="no-wall-time-threads"),
    ],
)
def test_choose_for_submit_table(
    cpu_s: float, wall_s: float, calls: int, facts: PlatformFacts, shippable: bool, expected: str | None
) -> None:
    """The choice for later submitted calls follows the measured CPU share, call time and platform."""
    assert _choose_for_submit(cpu_s, wall_s, calls, facts, shippable) == expected


class _Holder:
    def method(self) -> int:
        return 1


def test_identity_keys_by_code_without_keeping_instances() -> None:
    """Bound methods of two instances and partials of one function share a key that holds no instance."""
    first, second = _Holder(), _Holder()
    assert _identity(first.method) == _identity(second.method) == _Holder.method.__code__
    assert _identity(functools.partial(square, 3)) == square.__code__
    assert _identity(pow) == ("builtins", "pow")


def _scripted(rule: Callable[..., str | None]) -> type[autopar.Executor]:
    """An Executor whose submit asks ``rule`` instead of auto's own rule."""

    class Scripted(autopar.Executor):
        _submit_rule = staticmethod(rule)

    return Scripted


def test_submit_auto_times_first_calls_then_uses_the_choice() -> None:
    """Under auto the first calls of a function run on threads; after 3 calls the chosen process pool runs the rest."""
    seen: list[tuple[Any, ...]] = []

    def choose(*args: Any) -> str:
        seen.append(args)
        return "forkserver"

    with _scripted(choose)(workers=2) as executor:
        first = [executor.submit(pid_of, x).result(timeout=30) for x in range(3)]
        later = [f.result(timeout=30) for f in [executor.submit(pid_of, x) for x in range(4)]]
    assert set(first) == {os.getpid()}
    assert os.getpid() not in later
    (_, wall_s, calls, _, shippable) = seen[-1]
    assert (calls, shippable) == (3, True)
    assert wall_s > 0


@pytest.mark.parametrize("choice", ["threads", "forkserver"])
def test_submit_auto_never_runs_a_call_twice(choice: str, tmp_path: Path) -> None:
    """A burst of submits under auto runs every call exactly once, across the switch from timing to the choice."""
    log = tmp_path / "calls.log"
    with _scripted(lambda *_: choice)(workers=2) as executor:
        futures = [executor.submit(record_square, (str(log), x)) for x in range(40)]
        futures += [executor.submit(record_square, (str(log), x)) for x in range(40, 80)]
        results = [f.result(timeout=30) for f in futures]
    assert results == [x * x for x in range(80)]
    assert sorted(int(line) for line in log.read_text().split()) == list(range(80))


def test_submit_auto_real_choice_runs_each_call_once(tmp_path: Path) -> None:
    """With the real choice, GIL-bound calls submitted under auto all complete, each exactly once."""
    log = tmp_path / "calls.log"
    with autopar.Executor(workers=2) as executor:
        futures = [executor.submit(countdown, 200_000) for _ in range(6)]
        futures += [executor.submit(record_square, (str(log), x)) for x in range(10)]
        assert [f.result(timeout=30) for f in futures] == [0] * 6 + [x * x for x in range(10)]
    assert sorted(int(line) for line in log.read_text().split()) == list(range(10))


def test_submit_auto_replaces_a_broken_process_pool() -> None:
    """Under auto a dead worker fails its own call only: the next call of the function gets a new process pool."""
    with _scripted(lambda *_: "forkserver")(workers=1) as executor:
        assert [executor.submit(segfault_quietly_on_3, x).result(timeout=30) for x in range(3)] == [0, 1, 2]
        error = executor.submit(segfault_quietly_on_3, 3).exception(timeout=30)
        assert isinstance(error, autopar.WorkerCrashedError)
        assert "the next call starts a new one" in str(error)
        assert executor.submit(segfault_quietly_on_3, 4).result(timeout=30) == 4


def test_submit_auto_lambda_holding_a_lock_stays_on_threads() -> None:
    """A function that cannot be pickled even by value is never sent to a process pool, whatever the timing says."""
    lock = threading.Lock()

    def locked(x: int) -> int:
        with lock:
            return (countdown(300_000), os.getpid())[1]

    with autopar.Executor(workers=2) as executor:
        pids = [executor.submit(locked, x).result(timeout=30) for x in range(5)]
    assert set(pids) == {os.getpid()}


def test_submit_auto_lambda_runs_wherever_its_timing_says() -> None:
    """A lambda goes by value: auto may send it to a process pool, and its results are right either way."""
    with autopar.Executor(workers=2) as executor:
        out = [executor.submit(lambda x: countdown(300_000) + x, x).result(timeout=30) for x in range(5)]
    assert out == [countdown(300_000) + x for x in range(5)]


def test_star_pickles_for_spawn_workers() -> None:
    """The wrapper auto maps over several iterables pickles by reference, so spawn workers can receive it."""
    star = pickle.loads(pickle.dumps(Star(pow)))
    assert star((2, 5)) == 32
