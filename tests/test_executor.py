"""``autopar.Executor``: the ``concurrent.futures.Executor`` contract under every strategy, and auto's choice for submit."""

from __future__ import annotations

import asyncio
import concurrent.futures
import faulthandler
import functools
import multiprocessing
import multiprocessing.resource_tracker
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

import attrs
import pytest

import autopar
from autopar import _plan
from autopar._executor._map import Star
from autopar._model import PlatformFacts
from autopar._submit_choice import _choose_for_submit, _identity
from helpers import countdown, fail_on_3, pid_of, record_square, sleep_for, square

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

STRATEGIES = ("serial", "threads", "fork", "forkserver", "spawn", "auto")
PROCESSES = ("fork", "forkserver", "spawn")

# -- functions the workers run (module level, so spawn workers import them) -------------------------------------------

_worker_state: dict[str, Any] = {}


def remember(name: str, value: Any) -> None:
    """Initializer: keep ``value`` under ``name`` in this worker."""
    _worker_state[name] = value


def recall(name: str) -> Any:
    """What the initializer kept under ``name`` in this worker."""
    return _worker_state.get(name)


def crash_on_3(x: int) -> int:
    """Kill this worker with SIGSEGV on 3, without faulthandler's report (pytest enables it in forked children)."""
    if x == 3:
        faulthandler.disable()
        os.kill(os.getpid(), signal.SIGSEGV)
    return x


def pass_gate(x: int) -> int:
    """Wait until the gate the initializer kept is open (a deadlock guard of 30 s), then return x."""
    assert _worker_state["gate"].wait(30), "the gate never opened"
    return x


# -- fixtures ----------------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _resource_tracker_running() -> None:
    """Start multiprocessing's resource tracker before any test snapshots the child processes.

    ProcessPoolExecutor's queues register semaphores with this helper process,
    which then lives for the whole session, like the forkserver server; started
    inside a test, the leak check of conftest.py would report it as a leftover.
    """
    multiprocessing.resource_tracker.ensure_running()


@pytest.fixture(name="any_strategy", params=STRATEGIES)
def _any_strategy(request: pytest.FixtureRequest) -> str:
    """Each strategy an Executor accepts."""
    name: str = request.param
    return name


@pytest.fixture(name="executor")
def _executor_fixture(any_strategy: str) -> Iterator[autopar.Executor]:
    """An Executor of each strategy with two workers, shut down afterwards."""
    with autopar.Executor(any_strategy, workers=2) as executor:
        yield executor


# -- the Executor contract, every strategy -----------------------------------------------------------------------------


def test_submit_returns_result_each_strategy(executor: autopar.Executor) -> None:
    """submit returns a concurrent.futures.Future holding the call's result, keyword arguments included."""
    future = executor.submit(square, 7)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=30) == 49
    assert executor.submit(pow, 2, exp=10).result(timeout=30) == 1024


def test_submit_exception_propagates_each_strategy(executor: autopar.Executor) -> None:
    """An exception raised by the call is the future's exception, with its own type and message."""
    future = executor.submit(fail_on_3, 3)
    with pytest.raises(ValueError, match="bad item 3"):
        future.result(timeout=30)


def test_map_results_in_input_order_each_strategy(executor: autopar.Executor) -> None:
    """map yields results in input order, for one iterable and for several (the shortest one ends it)."""
    assert list(executor.map(square, range(20))) == [x * x for x in range(20)]
    assert list(executor.map(pow, range(10), range(10), range(3, 100))) == [
        pow(x, x, m) for x, m in zip(range(10), range(3, 13), strict=True)
    ]


def test_map_exception_raised_at_its_item_each_strategy(executor: autopar.Executor) -> None:
    """The iterator of map yields the results before a failing item, then raises its exception."""
    results = executor.map(fail_on_3, range(6))
    assert [next(results), next(results), next(results)] == [0, 1, 2]
    with pytest.raises(ValueError, match="bad item 3"):
        next(results)


def test_map_strings_as_input_each_strategy(executor: autopar.Executor) -> None:
    """A string is an iterable of characters for map, as with the builtin map."""
    assert list(executor.map(str.upper, "abc")) == ["A", "B", "C"]


def test_wait_and_as_completed_see_every_future_each_strategy(executor: autopar.Executor) -> None:
    """concurrent.futures.wait and as_completed work with the futures submit returns."""
    futures = [executor.submit(square, x) for x in range(8)]
    done, pending = concurrent.futures.wait(futures, timeout=30)
    assert (len(done), pending) == (8, set())
    completed = list(concurrent.futures.as_completed(futures, timeout=30))
    assert sorted(f.result() for f in completed) == [x * x for x in range(8)]


def test_wrap_future_awaits_result_each_strategy(executor: autopar.Executor) -> None:
    """asyncio.wrap_future turns a submitted future into an awaitable with the same result or exception."""

    async def main() -> tuple[int, BaseException | None]:
        result = await asyncio.wrap_future(executor.submit(square, 9))
        try:
            await asyncio.wrap_future(executor.submit(fail_on_3, 3))
        except ValueError as exc:
            return result, exc
        return result, None

    result, error = asyncio.run(main())
    assert result == 81
    assert isinstance(error, ValueError)


def test_submit_after_shutdown_raises_runtime_error_each_strategy(any_strategy: str) -> None:
    """After shutdown, submit and map raise RuntimeError as the standard executors do."""
    executor = autopar.Executor(any_strategy, workers=2)
    assert executor.submit(square, 2).result(timeout=30) == 4
    executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(square, 3)
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.map(square, [1])


def test_context_manager_shuts_down_each_strategy(any_strategy: str) -> None:
    """Leaving the with block shuts the executor down after its calls finish."""
    with autopar.Executor(any_strategy, workers=2) as executor:
        futures = [executor.submit(square, x) for x in range(4)]
    assert all(f.done() for f in futures)
    with pytest.raises(RuntimeError):
        executor.submit(square, 1)


def test_errors_return_gives_exceptions_as_results_each_strategy(any_strategy: str) -> None:
    """With errors="return", map yields a failing item's exception in its place and goes on."""
    with autopar.Executor(any_strategy, workers=2, errors="return") as executor:
        results = list(executor.map(fail_on_3, range(5)))
    assert results[:3] + results[4:] == [0, 1, 2, 4]
    assert isinstance(results[3], ValueError)


def test_progress_reports_every_result_each_strategy(any_strategy: str) -> None:
    """The progress option of map is called with (done, total), ending at (n, n)."""
    calls: list[tuple[int, int | None]] = []
    with autopar.Executor(any_strategy, workers=2, progress=lambda done, total: calls.append((done, total))) as ex:
        assert list(ex.map(square, range(30))) == [x * x for x in range(30)]
    assert calls[-1] == (30, 30)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_initializer_runs_before_calls_each_strategy(any_strategy: str) -> None:
    """The initializer runs with its initargs wherever calls run, before the first call."""
    with autopar.Executor(any_strategy, workers=1, initializer=remember, initargs=("token", 42)) as executor:
        assert executor.submit(recall, "token").result(timeout=30) == 42


# -- shutdown, cancellation, timeouts ----------------------------------------------------------------------------------


def _outcome(future: concurrent.futures.Future[Any]) -> Any:
    """The future's result, or "cancelled", once it is one or the other (a deadlock guard of 30 s)."""
    try:
        return future.result(timeout=30)
    except concurrent.futures.CancelledError:
        return "cancelled"


@pytest.mark.parametrize("strategy", ["threads", *PROCESSES, "auto"])
def test_shutdown_cancel_futures_cancels_pending_calls(strategy: str) -> None:
    """shutdown(cancel_futures=True) cancels the calls not yet started; the running one completes."""
    method = strategy if strategy in PROCESSES else None
    gate = multiprocessing.get_context(method).Event()
    executor = autopar.Executor(strategy, workers=1, initializer=remember, initargs=("gate", gate))
    first = executor.submit(pass_gate, 0)
    pending = [executor.submit(pass_gate, x) for x in range(1, 11)]
    executor.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert first.result(timeout=30) == 0
    outcomes = [_outcome(f) for f in pending]
    # A process pool has already handed up to workers + 1 calls to its queue: those run.
    assert outcomes.count("cancelled") >= 8
    assert all(outcome in ("cancelled", x) for x, outcome in enumerate(outcomes, 1))
    executor.shutdown(wait=True)


@pytest.mark.parametrize("strategy", PROCESSES)
def test_cancel_pending_process_call_marks_future_done(strategy: str) -> None:
    """Cancelling a process pool call that waits in line succeeds, and wait() then counts it as done."""
    gate = multiprocessing.get_context(strategy).Event()
    with autopar.Executor(strategy, workers=1, initializer=remember, initargs=("gate", gate)) as executor:
        futures = [executor.submit(pass_gate, x) for x in range(5)]
        last = futures[-1]
        assert not last.running()
        assert last.cancel()
        assert last.cancelled()
        done, _ = concurrent.futures.wait([last], timeout=30)
        assert done == {last}
        gate.set()
        assert [f.result(timeout=30) for f in futures[:-1]] == [0, 1, 2, 3]
        assert not futures[0].cancel()


@pytest.mark.parametrize("strategy", ["threads", "auto"])
def test_map_timeout_raises_timeout_error_from_iterator(strategy: str) -> None:
    """map's timeout raises concurrent.futures.TimeoutError (the builtin one since 3.11) from the iterator."""
    with autopar.Executor(strategy, workers=2) as executor:
        results = executor.map(sleep_for, [0.0, 2.0], timeout=0.5)
        with pytest.raises(concurrent.futures.TimeoutError):
            list(results)


@pytest.mark.parametrize("strategy", ["threads", "spawn", "auto"])
def test_interpreter_exit_finishes_submitted_calls(strategy: str, tmp_path: Path) -> None:
    """A call submitted and never waited for still runs before the interpreter exits, with nothing on stderr."""
    script = tmp_path / "submit_and_exit.py"
    script.write_text(
        textwrap.dedent(f"""
        import autopar

        def work(message):
            print(message, flush=True)

        if __name__ == "__main__":
            executor = autopar.Executor({strategy!r}, workers=2)
            executor.submit(work, "apple")
        """)
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "apple", "")


# -- process pools -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", PROCESSES)
def test_worker_crash_raises_worker_crashed_error(strategy: str) -> None:
    """A dead worker fails its future with WorkerCrashedError, a BrokenProcessPool, and the pool stays broken."""
    with autopar.Executor(strategy, workers=1) as executor:
        error = executor.submit(crash_on_3, 3).exception(timeout=30)
        assert isinstance(error, autopar.WorkerCrashedError)
        assert isinstance(error, BrokenProcessPool)
        assert "SIGSEGV" in str(error) or "segmentation fault" in str(error)
        with pytest.raises(autopar.WorkerCrashedError, match="earlier call"):
            executor.submit(square, 1)


@pytest.mark.parametrize("strategy", PROCESSES)
def test_worker_crash_in_map_raises_worker_crashed_error(strategy: str) -> None:
    """A worker dying during map raises WorkerCrashedError from the iterator."""
    with autopar.Executor(strategy, workers=1) as executor, pytest.raises(autopar.WorkerCrashedError):
        list(executor.map(crash_on_3, range(6)))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ProcessPoolExecutor has max_tasks_per_child from 3.11")
def test_max_tasks_per_worker_replaces_processes() -> None:
    """With max_tasks_per_worker=1 every call runs in a fresh worker process."""
    with autopar.Executor("spawn", workers=1, max_tasks_per_worker=1) as executor:
        pids = [executor.submit(pid_of, x).result(timeout=30) for x in range(3)]
    assert len(set(pids)) == 3


# -- options -----------------------------------------------------------------------------------------------------------


def test_env_strategy_and_workers_override_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    """AUTOPAR_STRATEGY and AUTOPAR_WORKERS win over the constructor's arguments."""
    monkeypatch.setenv("AUTOPAR_STRATEGY", "threads")
    monkeypatch.setenv("AUTOPAR_WORKERS", "3")
    with autopar.Executor("spawn", workers=1) as executor:
        assert executor.strategy == "threads"
        assert "workers=3" in repr(executor)
        assert executor.submit(square, 4).result(timeout=30) == 16


def test_bad_options_raise_at_construction() -> None:
    """An unknown option, one of map's the Executor does not take, a bad value or an unknown strategy raise, naming it."""
    with pytest.raises(TypeError, match="'chunk_size'"):
        autopar.Executor(chunk_size=3)
    with pytest.raises(TypeError, match=r"'retries' not accepted by autopar\.Executor"):
        autopar.Executor("threads", retries=2)
    with pytest.raises(ValueError, match="workers"):
        autopar.Executor("threads", workers=0)
    with pytest.raises(ValueError, match="'gpu'"):
        autopar.Executor("gpu")


def test_forced_fork_warns_when_threads_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forcing fork while another thread runs warns with UnsafeStrategyWarning."""
    monkeypatch.setattr(_plan, "_warned", set())
    release = threading.Event()
    thread = threading.Thread(target=release.wait, args=(30,))
    thread.start()
    try:
        with pytest.warns(autopar.UnsafeStrategyWarning, match="fork"):
            executor = autopar.Executor("fork", workers=1)
    finally:
        release.set()
        thread.join()
    executor.shutdown()


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
        pytest.param(0.3, 0.3, 2, LINUX, True, "", id="fewer-than-3-calls-undecided"),
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
    cpu_s: float, wall_s: float, calls: int, facts: PlatformFacts, shippable: bool, expected: str
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
        submit_rule = staticmethod(rule)

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
        assert [executor.submit(crash_on_3, x).result(timeout=30) for x in range(3)] == [0, 1, 2]
        error = executor.submit(crash_on_3, 3).exception(timeout=30)
        assert isinstance(error, autopar.WorkerCrashedError)
        assert "the next call starts a new one" in str(error)
        assert executor.submit(crash_on_3, 4).result(timeout=30) == 4


def test_submit_auto_lambda_stays_on_threads() -> None:
    """A function that cannot be pickled is never sent to a process pool, whatever the timing says."""
    with autopar.Executor(workers=2) as executor:
        pids = [executor.submit(lambda x: (countdown(300_000), os.getpid())[1], x).result(timeout=30) for x in range(5)]
    assert set(pids) == {os.getpid()}


def test_star_pickles_for_spawn_workers() -> None:
    """The wrapper auto maps over several iterables pickles by reference, so spawn workers can receive it."""
    star = pickle.loads(pickle.dumps(Star(pow)))
    assert star((2, 5)) == 32


def test_repr_names_strategy_and_state() -> None:
    """The repr shows the strategy, the workers and whether the executor is open."""
    executor = autopar.Executor("threads", workers=2)
    assert repr(executor) == "<autopar.Executor strategy='threads' workers=2 open>"
    executor.shutdown()
    assert repr(executor).endswith("shut down>")
