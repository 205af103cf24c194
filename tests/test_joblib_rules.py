"""joblib's rules in the core (``_core._joblib``), driven by synthetic records: no joblib, no clock."""

from __future__ import annotations

import attrs
import pytest

from autopar._core._decide import decide
from autopar._core._joblib import (
    MAX_CALLER_BATCH,
    JoblibRequest,
    assumed_items,
    check_require,
    configured_workers,
    joblib_decision,
    joblib_facts,
    keeps_sampling,
    next_batch,
    probe_items,
    workers_bound,
)
from autopar._core._joblib_speculate import (
    on_speculative_pool,
    speculative_decision,
    starting_pool_timing,
    waits_for_pool,
)
from autopar._core._safety import PROCESS_METHODS
from autopar._core._sampling import MAX_SAMPLE_ITEMS
from autopar._model import Measurements, Options, PlatformFacts, SerialSample
from platforms import LINUX, LINUX_NATIVE

AUTO = Options()
LINUX_8 = attrs.evolve(LINUX, cpu_count=8)


def gil_bound(n_items: int = 1000, item_s: float = 0.05) -> Measurements:
    """Pure Python under the GIL: two threads ran no faster than one; small, cheap pickles."""
    return Measurements(
        n_items=n_items,
        item_wall_s=item_s,
        item_cpu_s=item_s,
        item_process_cpu_s=item_s,
        item_wall_max_s=item_s,
        item_waits=0.0,
        pickle_s=1e-5,
        thread_probe_workers=2,
        thread_speedup=1.0,
    )


def releases_gil(n_items: int = 1000, item_s: float = 0.05) -> Measurements:
    """Compiled code that releases the GIL: two threads ran twice as fast as one."""
    return attrs.evolve(gil_bound(n_items, item_s), thread_speedup=2.0)


@pytest.mark.parametrize(
    ("n_jobs", "cpus", "bound"),
    [(None, 8, 1), (1, 8, 1), (3, 8, 3), (16, 8, 16), (-1, 8, 8), (-2, 8, 7), (-20, 8, 1)],
)
def test_n_jobs_reads_as_joblib_reads_it(n_jobs: int | None, cpus: int, bound: int) -> None:
    """None is 1, -1 every CPU, -2 all but one, never below 1."""
    assert workers_bound(n_jobs, cpus) == bound


@pytest.mark.parametrize(("n_jobs", "error"), [(0, ValueError), (2.5, TypeError), ("4", TypeError), (True, TypeError)])
def test_bad_n_jobs_is_named_in_the_error(n_jobs: object, error: type[Exception]) -> None:
    """n_jobs=0 and non-integers raise, naming the value."""
    with pytest.raises(error, match=f"n_jobs={n_jobs!r}"):
        workers_bound(n_jobs, 4)


def test_bad_hints_are_named_in_the_error() -> None:
    """An unknown prefer or require value raises, naming it."""
    with pytest.raises(ValueError, match="prefer='gpu'"):
        JoblibRequest(n_jobs=2, prefer="gpu")
    with pytest.raises(ValueError, match="require='nogil'"):
        check_require("nogil")
    assert check_require("sharedmem") is True
    assert check_require(None) is False


def test_n_jobs_1_and_nested_calls_run_in_the_caller() -> None:
    """configure reports 1 for n_jobs=1 and inside a worker, so joblib runs every task in the caller."""
    assert configured_workers(JoblibRequest(n_jobs=1), LINUX) == 1
    assert configured_workers(JoblibRequest(n_jobs=4), attrs.evolve(LINUX, in_worker=True)) == 1
    assert configured_workers(JoblibRequest(n_jobs=4), LINUX) == 4


def test_sharedmem_leaves_no_process_method_and_n_jobs_caps_the_cpus() -> None:
    """The platform as the call may use it: n_jobs CPUs at most, no start method under sharedmem."""
    facts = joblib_facts(LINUX_8, JoblibRequest(n_jobs=3, sharedmem=True))
    assert facts.cpu_count == 3
    assert facts.start_methods == ()
    assert joblib_facts(LINUX_8, JoblibRequest(n_jobs=3)).start_methods == LINUX.start_methods


def test_gil_bound_work_goes_to_processes_within_the_bound() -> None:
    """Long GIL-bound work goes to a process pool, with no more workers than n_jobs."""
    decision = joblib_decision(gil_bound(), LINUX_8, AUTO, JoblibRequest(n_jobs=3))
    assert decision.strategy in PROCESS_METHODS
    assert decision.workers <= 3


def test_sharedmem_rules_out_processes_even_when_they_win() -> None:
    """require='sharedmem' is a hard rule: threads or serial, whatever processes would predict."""
    assert decide(gil_bound(), LINUX, AUTO).strategy in PROCESS_METHODS
    decision = joblib_decision(gil_bound(), LINUX, AUTO, JoblibRequest(n_jobs=2, sharedmem=True))
    assert decision.strategy in ("serial", "threads")
    assert any("sharedmem" in reason for reason in decision.reasons)


def test_sharedmem_overrules_a_forced_process_strategy() -> None:
    """A process strategy forced by configuration gives way to sharedmem."""
    forced = Options(strategy="forkserver", strategy_source="config")
    decision = joblib_decision(gil_bound(), LINUX, forced, JoblibRequest(n_jobs=2, sharedmem=True))
    assert decision.strategy in ("serial", "threads")


def test_prefer_threads_breaks_a_tie_with_processes() -> None:
    """Work that releases the GIL: processes and threads are close; prefer='threads' picks threads."""
    m = releases_gil()
    decision = joblib_decision(m, LINUX, AUTO, JoblibRequest(n_jobs=2, prefer="threads"))
    assert decision.strategy == "threads"


def test_prefer_processes_breaks_a_tie_but_never_picks_a_clear_loser() -> None:
    """prefer='processes' picks a process pool within 10% of the fastest, and not a slower one."""
    close = joblib_decision(releases_gil(item_s=0.5), LINUX, AUTO, JoblibRequest(n_jobs=2, prefer="processes"))
    assert close.strategy in PROCESS_METHODS
    tiny = joblib_decision(
        releases_gil(n_items=10, item_s=1e-5), LINUX, AUTO, JoblibRequest(n_jobs=2, prefer="processes")
    )
    assert tiny.strategy == "serial"


def test_short_stream_stays_serial_and_keeps_sampling() -> None:
    """A stream of unknown length is taken to run as long again: a few short tasks stay in the caller."""
    seen = 3
    m = attrs.evolve(gil_bound(n_items=assumed_items(None, seen), item_s=0.005), sampled=seen)
    decision = joblib_decision(m, LINUX, AUTO, JoblibRequest(n_jobs=2))
    assert decision.strategy == "serial"
    assert keeps_sampling(decision, JoblibRequest(n_jobs=2))
    assert not keeps_sampling(decision, JoblibRequest(n_jobs=2, n_tasks=6))


def test_assumed_items_doubles_what_was_seen_unless_the_length_is_known() -> None:
    """Known lengths are kept; unknown ones are twice the tasks seen."""
    assert assumed_items(40, 3) == 40
    assert assumed_items(None, 3) == 6
    assert assumed_items(None, 0) == 2


def test_batches_double_while_sampling_and_stay_bounded() -> None:
    """The caller's batches double as the serial sample's do, and never pass an adaptive chunk."""
    assert next_batch(SerialSample(), 1) == 1
    assert next_batch(SerialSample(count=3, wall_s=1e-3), 2) == 4
    assert next_batch(SerialSample(count=7, wall_s=1e-3), 6000) == MAX_CALLER_BATCH
    big = SerialSample(count=MAX_SAMPLE_ITEMS, wall_s=MAX_SAMPLE_ITEMS * 1e-6)
    assert 1 <= next_batch(big, 50) <= MAX_CALLER_BATCH


def test_prefer_threads_probes_early_and_others_probe_for_the_assumed_length() -> None:
    """prefer='threads' plans the probe as for a long stream; other calls for the tasks the decision assumes."""
    assert probe_items(JoblibRequest(n_jobs=2, prefer="threads"), 3) is None
    assert probe_items(JoblibRequest(n_jobs=2), 3) == 6
    assert probe_items(JoblibRequest(n_jobs=2, prefer="threads", n_tasks=40), 3) == 40


def sampled(item_s: float, count: int = 1) -> Measurements:
    """What the serial sample of a call of unknown length measured: computing items, no thread probe."""
    m = attrs.evolve(gil_bound(item_s=item_s), thread_probe_workers=0, thread_speedup=None)
    return attrs.evolve(m, n_items=2 * count, sampled=count)


def computing(item_s: float, *, process_s: float | None = None, waits: int = 0) -> SerialSample:
    """A one-item serial sample: the thread computed (or ran native threads, or blocked)."""
    return SerialSample(
        count=1, wall_s=item_s, cpu_s=item_s, process_s=process_s or item_s, max_item_s=item_s, waits=waits
    )


@pytest.mark.parametrize("facts", [LINUX, LINUX_NATIVE, LINUX_8])
def test_long_gil_bound_tasks_of_unknown_count_start_a_pool_on_speculation(facts: PlatformFacts) -> None:
    """Tasks of 120 ms under the GIL, count unknown: a process pool is started while the caller runs on."""
    bet = speculative_decision(computing(0.12), sampled(0.12), facts, AUTO, JoblibRequest(n_jobs=64))
    assert bet is not None
    assert bet.strategy in PROCESS_METHODS
    assert 2 <= bet.workers <= facts.cpu_count


@pytest.mark.parametrize(
    ("item_s", "request_"),
    [
        (0.0001, JoblibRequest(n_jobs=2)),  # tiny tasks: a pool never pays for a few rounds
        (0.003, JoblibRequest(n_jobs=2)),  # a few ms: serial wins a short call
        (0.12, JoblibRequest(n_jobs=2, n_tasks=20)),  # a known count: the decision needs no bet
        (0.12, JoblibRequest(n_jobs=2, sharedmem=True)),  # shared memory: no process
        (0.12, JoblibRequest(n_jobs=2, prefer="threads")),  # the library expects threads to scale
        (0.12, JoblibRequest(n_jobs=1)),  # one worker
    ],
)
def test_no_speculation_where_the_bet_cannot_pay(item_s: float, request_: JoblibRequest) -> None:
    """Short tasks, known counts, sharedmem and a single worker never start a pool on speculation."""
    assert speculative_decision(computing(item_s), sampled(item_s), LINUX, AUTO, request_) is None


@pytest.mark.parametrize(
    "sample",
    [
        computing(0.12, process_s=0.24),
        computing(0.12, waits=40),
        SerialSample(count=1, wall_s=0.04, cpu_s=0.02, process_s=0.04, max_item_s=0.04, waits=0),
    ],
    ids=["native threads", "blocked", "BLAS threads warming up"],
)
def test_only_computing_work_is_bet_on(sample: SerialSample) -> None:
    """Work on native threads, or that blocked, may scale on threads: no process pool is started on speculation."""
    assert speculative_decision(sample, sampled(0.12), LINUX, AUTO, JoblibRequest(n_jobs=2)) is None


def test_a_forced_strategy_never_speculates() -> None:
    """A strategy forced by configuration runs as forced, without a speculative pool."""
    forced = Options(strategy="serial")
    assert speculative_decision(computing(0.12), sampled(0.12), LINUX, forced, JoblibRequest(n_jobs=2)) is None


@pytest.mark.parametrize(
    ("strategy", "workers", "speculative", "ready", "waits"),
    [
        ("forkserver", 2, ("forkserver", 2), False, True),  # the pool wanted is still starting
        ("forkserver", 2, ("forkserver", 2), True, False),  # ready: the call moves to it
        ("spawn", 2, ("forkserver", 2), False, True),  # processes: the starting pool serves them
        ("spawn", 4, ("forkserver", 2), False, False),  # another worker count: started now
        ("threads", 2, ("forkserver", 2), False, False),  # threads: no wait
        ("forkserver", 2, None, False, False),  # no bet
    ],
)
def test_caller_runs_on_while_the_wanted_pool_starts(
    strategy: str, workers: int, speculative: tuple[str, int] | None, ready: bool, waits: bool
) -> None:
    """Only a decision for the speculative pool, still starting, keeps the batches in the caller."""
    decision = decide(gil_bound(), LINUX, AUTO)
    decision = attrs.evolve(decision, strategy=strategy, workers=workers)
    assert waits_for_pool(decision, speculative, ready) is waits


@pytest.mark.parametrize(
    ("strategy", "workers", "runs_as"),
    [("forkserver", 2, "forkserver"), ("spawn", 2, "forkserver"), ("spawn", 3, None), ("threads", 2, None)],
)
def test_process_decisions_with_its_workers_run_on_the_speculative_pool(
    strategy: str, workers: int, runs_as: str | None
) -> None:
    """A process decision of the pool's size takes its start method (its workers started); others start their own."""
    decision = attrs.evolve(decide(gil_bound(), LINUX, AUTO), strategy=strategy, workers=workers)
    moved = on_speculative_pool(decision, ("forkserver", 2))
    assert (moved.strategy if moved is not None else None) == runs_as
    if moved is not None and strategy != runs_as:
        assert "forkserver instead" in moved.reasons[-1]


@pytest.mark.parametrize(
    ("wall", "cpu", "waits", "timed"),
    [(0.2, 0.12, 40, (0.12, 0)), (0.1, 0.12, 3, (0.1, 0)), (0.2, 0.12, None, (0.12, None))],
)
def test_batches_run_while_a_pool_starts_are_timed_by_cpu(
    wall: float, cpu: float, waits: int | None, timed: tuple[float, int | None]
) -> None:
    """The starting workers' competition for the CPUs is not read as the task waiting."""
    assert starting_pool_timing(wall, cpu, waits) == timed
