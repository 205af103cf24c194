"""``amap`` and ``aimap``: results, a free event loop, prompt cancellation, bounded read-ahead; progress everywhere."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

import autopar
from autopar import _asyncio
from helpers import countdown, fail_on_3, square

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

STRATEGIES = ("serial", "threads", "fork", "forkserver", "spawn", "auto")

# amap and aimap drive imap from a thread of their own, so a forced fork always forks a
# process running two threads: autopar warns (tested once below) and Python 3.12+ warns too.
pytestmark = [
    pytest.mark.filterwarnings("ignore::autopar.UnsafeStrategyWarning"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning"),
]


@pytest.fixture(name="any_strategy", params=STRATEGIES)
def _any_strategy(request: pytest.FixtureRequest) -> str:
    """Each built-in strategy, and auto."""
    name: str = request.param
    return name


def _aimap_threads_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "autopar-aimap" and t.is_alive()]


# -- results -----------------------------------------------------------------------------------------------------------


def test_amap_returns_results_in_order_each_strategy(any_strategy: str) -> None:
    """amap is the list of results in input order, as autopar.map."""
    results = asyncio.run(autopar.amap(square, range(40), strategy=any_strategy, workers=2))
    assert results == [x * x for x in range(40)]


def test_aimap_streams_results_each_strategy(any_strategy: str) -> None:
    """aimap yields every result, in order by default and all of them with ordered=False."""

    async def main() -> tuple[list[int], list[int]]:
        ordered = [r async for r in autopar.aimap(square, range(30), strategy=any_strategy, workers=2)]
        unordered = [r async for r in autopar.aimap(square, range(30), strategy=any_strategy, ordered=False)]
        return ordered, unordered

    ordered, unordered = asyncio.run(main())
    assert ordered == [x * x for x in range(30)]
    assert sorted(unordered) == ordered


def test_amap_raises_the_function_exception_each_strategy(any_strategy: str) -> None:
    """An exception of func reaches the awaiting task with its own type and message."""
    with pytest.raises(ValueError, match="bad item 3"):
        asyncio.run(autopar.amap(fail_on_3, range(8), strategy=any_strategy, workers=2))


@pytest.mark.filterwarnings("error::autopar.UnsafeStrategyWarning")
def test_amap_forced_fork_warns_unsafe(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forced fork under amap warns: the process runs the event loop and amap's thread."""
    with pytest.warns(autopar.UnsafeStrategyWarning, match="threads"):
        assert asyncio.run(autopar.amap(square, range(5), strategy="fork", workers=1)) == [0, 1, 4, 9, 16]


def test_aimap_bad_option_raises_at_call() -> None:
    """A bad option raises TypeError when aimap is called, before any iteration."""

    async def main() -> None:
        autopar.aimap(square, range(3), chunk_size=2)

    with pytest.raises(TypeError, match="'chunk_size'"):
        asyncio.run(main())


# -- the event loop stays free -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["spawn", "auto"])
def test_event_loop_keeps_ticking_during_amap(strategy: str) -> None:
    """A heartbeat task keeps ticking while amap runs GIL-bound work, calibration included."""

    async def main() -> tuple[int, float, list[int]]:
        ticks = 0
        stop = asyncio.Event()

        async def heartbeat() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        beat = asyncio.create_task(heartbeat())
        started = time.perf_counter()
        results = await autopar.amap(countdown, [1_000_000] * 16, strategy=strategy, workers=2)
        elapsed = time.perf_counter() - started
        stop.set()
        await beat
        return ticks, elapsed, results

    ticks, elapsed, results = asyncio.run(main())
    assert results == [0] * 16
    # A blocked loop would tick once or twice; a free one ticks about every 5 ms (at least every 50 ms here).
    assert ticks >= max(5, elapsed / 0.05), (ticks, elapsed)


# -- cancellation ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["spawn", "auto"])
def test_cancel_amap_stops_work_promptly(strategy: str) -> None:
    """Cancelling the task awaiting amap returns promptly, ends the thread and stops the busy workers."""
    first_done = threading.Event()
    done_counts: list[int] = []

    def progress(done: int, _total: int | None) -> None:
        done_counts.append(done)
        first_done.set()

    async def main() -> float:
        # About 20 s of work on two workers: far longer than the cancellation may take.
        task = asyncio.create_task(
            autopar.amap(countdown, [1_500_000] * 400, strategy=strategy, workers=2, chunksize=2, progress=progress)
        )
        assert await asyncio.to_thread(first_done.wait, 30)
        cancelled_at = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.perf_counter() - cancelled_at

    latency = asyncio.run(main())
    assert latency < 10, latency
    assert _aimap_threads_alive() == []
    assert done_counts[-1] < 400


def test_aclosing_aimap_early_break_ends_thread() -> None:
    """Leaving an aclosing(aimap(...)) block early closes imap in its thread and ends that thread."""

    async def main() -> list[int]:
        taken: list[int] = []
        async with contextlib.aclosing(autopar.aimap(square, itertools.count(), strategy="threads")) as results:
            async for result in results:
                taken.append(result)
                if len(taken) == 5:
                    break
        return taken

    assert asyncio.run(main()) == [0, 1, 4, 9, 16]
    assert _aimap_threads_alive() == []


@pytest.mark.parametrize("strategy", ["serial", "threads"])
def test_aimap_reads_input_a_bounded_window_ahead(strategy: str) -> None:
    """An endless input is read only imap's window plus the hand-over buffer ahead of the consumer."""
    read = 0

    def source() -> Iterator[int]:
        nonlocal read
        for x in itertools.count():
            read += 1
            yield x

    async def main() -> None:
        stream = autopar.aimap(square, source(), strategy=strategy, workers=2, chunksize=1)
        async with contextlib.aclosing(stream) as results:
            async for result in results:
                if result == 10 * 10:
                    break

    asyncio.run(main())
    # 11 consumed, at most _BUFFER handed over, imap's window of 4 chunks of 1 per worker, one being read.
    assert read <= 11 + _asyncio._BUFFER + 2 * 4 + 2, read


# -- progress ----------------------------------------------------------------------------------------------------------


#: What the progress option given to the decorator below has seen.
_decorator_progress: list[tuple[int, Any]] = []


@autopar.parallel(progress=lambda done, total: _decorator_progress.append((done, total)))
def decorated_square(x: int) -> int:
    """x * x, decorated at module level so spawn workers find it by name."""
    return x * x


def _by_entry_point(entry: str, strategy: str, progress: Callable[[int, int | None], None]) -> list[int]:
    items = range(50)
    if entry == "map":
        return autopar.map(square, items, strategy=strategy, progress=progress)
    if entry == "imap":
        return list(autopar.imap(square, items, strategy=strategy, progress=progress))
    if entry == "decorator":
        return decorated_square.map(items, strategy=strategy)  # progress comes from the decorator
    if entry == "amap":
        return asyncio.run(autopar.amap(square, items, strategy=strategy, progress=progress))

    async def collect() -> list[int]:
        return [r async for r in autopar.aimap(square, items, strategy=strategy, progress=progress)]

    return asyncio.run(collect())


@pytest.mark.parametrize("entry", ["map", "imap", "decorator", "amap", "aimap"])
def test_progress_ends_at_n_of_n_each_entry_point(entry: str, any_strategy: str) -> None:
    """The progress callable gets (done, total) with done rising to the item count, calibration items included."""
    calls: list[tuple[int, Any]] = _decorator_progress if entry == "decorator" else []
    calls.clear()
    results = _by_entry_point(entry, any_strategy, lambda done, total: calls.append((done, total)))
    assert results == [x * x for x in range(50)]
    assert calls[-1] == (50, 50)
    assert {total for _, total in calls} == {50}
    assert [done for done, _ in calls] == sorted({done for done, _ in calls})


def test_progress_true_draws_a_tqdm_bar(capsys: pytest.CaptureFixture[str]) -> None:
    """progress=True draws a tqdm bar that reaches the item count."""
    assert asyncio.run(autopar.amap(square, range(20), strategy="threads", progress=True)) == [x * x for x in range(20)]
    assert "20/20" in capsys.readouterr().err
