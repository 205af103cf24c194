"""``autopar.Executor``: the ``concurrent.futures.Executor`` contract under every strategy, options and repr.

Shutdown, cancellation, timeouts and dead workers are in ``test_executor_lifecycle.py``, auto's choice for
``submit`` in ``test_executor_auto.py``, the package's parts in ``test_executor_parts.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import sys
import textwrap
import threading
from typing import TYPE_CHECKING

import pytest

import autopar
from helpers import fail_on_3, recall, remember, square

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

STRATEGIES = ("serial", "threads", "fork", "forkserver", "spawn", "auto")

# -- fixtures ----------------------------------------------------------------------------------------------------------


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


def test_forced_fork_warns_when_threads_run() -> None:
    """Forcing fork while another thread runs warns with UnsafeStrategyWarning."""
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


def test_repr_names_strategy_and_state() -> None:
    """The repr shows the strategy, the workers and whether the executor is open."""
    executor = autopar.Executor("threads", workers=2)
    assert repr(executor) == "<autopar.Executor strategy='threads' workers=2 open>"
    executor.shutdown()
    assert repr(executor).endswith("shut down>")
