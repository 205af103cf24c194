"""The cost model of ``autopar._core``, driven by synthetic measurements and injected platform facts."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopar._core._costs import DEFAULT_WORKER_STARTUP_S, PROCESS_CHUNK_OVERHEAD_S, predict
from autopar._core._decide import decide, forced_decision
from autopar._core._rounds import UNEVEN_SHARE, lockstep, rounds_s, uneven_tail_s
from autopar._core._sizing import (
    CHUNKS_PER_WORKER,
    FILLER_ITEMS_PER_CPU,
    MAX_PROCESSES_PER_CPU,
    MAX_THREADS,
    MAX_WAITING_THREADS,
    PLANNED_CHUNK_S,
    TARGET_CHUNK_S,
)
from autopar._core._workload import ASSUMED_ITEMS_UNKNOWN, NO_MEMORY_LIMIT, is_computing, memory_workers, workload
from autopar._model import Candidate, Decision, Measurements, Options, PlatformFacts, SerialSample
from autopar._render import predicted_call_s, render_outcome
from platforms import (
    ALL_POSIX,
    FREE_THREADED,
    LINUX,
    LINUX_314,
    LINUX_NATIVE,
    LINUX_THREADS,
    MACOS,
    NO_PROCESSES,
    WINDOWS,
)

PROCESSES = {"fork", "forkserver", "spawn"}
AUTO = Options()


def measure(
    n_items: int | None = 1000, item_s: float = 1e-3, *, cpu_share: float = 1.0, cores: float = 1.0, **kw: Any
) -> Measurements:
    """Measurements of items that each take ``item_s`` wall, ``cpu_share`` of it on the thread, ``cores`` cores."""
    kw.setdefault("item_wall_max_s", item_s)
    return Measurements(
        n_items=n_items,
        item_wall_s=item_s,
        item_cpu_s=item_s * cpu_share,
        item_process_cpu_s=item_s * max(cpu_share, cores),
        **kw,
    )


#: Pure Python holding the GIL: 1000 items of 1 ms, small arguments, 2 threads ran no faster than one.
GIL_1S = measure(
    1000,
    1e-3,
    pickle_s=5e-6,
    item_pickle_bytes=60,
    result_pickle_bytes=60,
    func_pickle_bytes=80,
    thread_probe_workers=2,
    thread_speedup=1.02,
)
#: Native code releasing the GIL: 2 threads ran 1.9x as fast.
RELEASES_GIL = attrs.evolve(GIL_1S, thread_speedup=1.9)
#: 200 network calls of 50 ms, CPU 2% of wall.
IO_WAIT = measure(200, 0.05, cpu_share=0.02)
#: 200,000 items of 0.2 us (adding numbers).
TINY = measure(200_000, 0.2e-6, pickle_s=1e-6, item_pickle_bytes=30, result_pickle_bytes=30)
HANDFUL = measure(3, 0.02)
#: 8 MB arrays whose pickling costs as much as the work on them.
LARGE_ARGS = measure(200, 8e-3, pickle_s=8e-3, item_pickle_bytes=8e6, result_pickle_bytes=8e6)
#: A multithreaded BLAS call already using two cores.
NATIVE_2X = measure(100, 0.01, cores=2.0)
UNSHIPPABLE = attrs.evolve(GIL_1S, shippable=False, ship_reason="a lambda cannot be pickled by reference")
UNPICKLABLE = attrs.evolve(GIL_1S, data_picklable=False)

#: (id, measurements, facts, strategies allowed, workers expected or None).
CHOICES = [
    ("gil-bound-linux", GIL_1S, LINUX, {"fork"}, 2),
    ("gil-bound-linux-threads", GIL_1S, LINUX_THREADS, {"forkserver"}, 2),
    ("gil-bound-linux-3.14", GIL_1S, LINUX_314, {"forkserver"}, 2),
    ("gil-bound-macos", GIL_1S, MACOS, {"forkserver", "spawn"}, 2),
    ("gil-bound-macos-no-forkserver", GIL_1S, attrs.evolve(MACOS, start_methods=("spawn", "fork")), {"spawn"}, 2),
    ("gil-bound-windows", GIL_1S, WINDOWS, {"spawn"}, 2),
    ("gil-bound-no-processes", GIL_1S, NO_PROCESSES, {"serial"}, 1),
    ("gil-bound-one-cpu", GIL_1S, attrs.evolve(LINUX, cpu_count=1), {"serial"}, 1),
    ("releases-gil", RELEASES_GIL, LINUX, {"threads"}, 2),
    ("releases-gil-probed-4-on-2-cpus", attrs.evolve(RELEASES_GIL, thread_probe_workers=4), LINUX, {"threads"}, 2),
    ("io-waiting", IO_WAIT, LINUX, {"threads"}, None),
    ("tiny-items", TINY, LINUX, {"serial"}, 1),
    ("handful", HANDFUL, LINUX, {"serial"}, 1),
    ("one-long-item", measure(1, 5.0), LINUX, {"serial"}, 1),
    ("all-sampled", measure(10, 1e-3, sampled=10), LINUX, {"serial"}, 1),
    ("large-arguments", LARGE_ARGS, LINUX, {"serial", "threads"}, None),
    ("native-threads-2-cores", NATIVE_2X, LINUX_NATIVE, {"serial"}, 1),
    ("native-threads-8-cores", NATIVE_2X, attrs.evolve(LINUX_NATIVE, cpu_count=8), {"forkserver"}, 8),
    ("unshippable-fork-safe", UNSHIPPABLE, LINUX, {"fork"}, 2),
    ("unshippable-fork-unsafe", UNSHIPPABLE, LINUX_THREADS, {"serial", "threads"}, None),
    ("unshippable-windows", UNSHIPPABLE, WINDOWS, {"serial", "threads"}, None),
    ("unpicklable-data", UNPICKLABLE, LINUX, {"serial", "threads"}, None),
    ("free-threaded", measure(1000, 1e-3), FREE_THREADED, {"threads"}, 2),
    ("unknown-length", measure(None, 1e-3), LINUX, {"fork"}, 2),
]


def candidate(decision: Decision, strategy: str) -> Candidate:
    """The decision's candidate for ``strategy``."""
    return next(c for c in decision.candidates if c.strategy == strategy)


def strategies(decision: Decision) -> set[str]:
    """Every strategy the decision considered."""
    return {c.strategy for c in decision.candidates}


def reasons(decision: Decision) -> str:
    """All the decision's reasons as one string."""
    return "\n".join(decision.reasons)


@pytest.mark.parametrize(
    ("m", "facts", "allowed", "workers"), [pytest.param(*case[1:], id=case[0]) for case in CHOICES]
)
def test_strategy_matches_table_per_workload(
    m: Measurements, facts: PlatformFacts, allowed: set[str], workers: int | None
) -> None:
    """Each synthetic workload gets a strategy from its row's allowed set, with the expected workers."""
    decision = decide(m, facts, AUTO)
    assert decision.strategy in allowed, str(decision)
    if workers is not None:
        assert decision.workers == workers, str(decision)
    assert not decision.forced
    assert decision.measurements is m
    assert candidate(decision, decision.strategy).predicted_s == decision.predicted_s


@pytest.mark.parametrize("facts", [MACOS, attrs.evolve(MACOS, start_methods=("spawn", "fork"))])
def test_fork_never_chosen_on_macos(facts: PlatformFacts) -> None:
    """macOS never gets fork automatically, even for work that favours the cheapest start-up."""
    decision = decide(measure(100_000, 1e-4), facts, AUTO)
    assert "fork" not in strategies(decision)
    assert decision.strategy in {"forkserver", "spawn"}
    assert "fork is unsafe: macOS" in reasons(decision)


def test_fork_unsafe_reason_names_replacement_with_threads() -> None:
    """When threads make fork unsafe, the reasons say why and which method replaced it."""
    decision = decide(GIL_1S, LINUX_THREADS, AUTO)
    assert "fork is unsafe: the process runs 3 threads" in reasons(decision)
    assert "using forkserver" in reasons(decision)


def test_fork_left_out_when_interpreter_default_is_forkserver() -> None:
    """Python 3.14 defaults to forkserver on Linux: fork is no auto candidate, and the reasons say so."""
    decision = decide(GIL_1S, LINUX_314, AUTO)
    assert "fork" not in strategies(decision)
    assert "default start method is forkserver" in reasons(decision)


@pytest.mark.parametrize("cpu_count", [1, 2, 4, 16])
def test_io_threads_exceed_cpu_count_up_to_cap(cpu_count: int) -> None:
    """Waiting work gets more threads than CPUs, never more than the cap unless CPUs alone exceed it."""
    decision = decide(IO_WAIT, attrs.evolve(LINUX, cpu_count=cpu_count), AUTO)
    assert decision.strategy == "threads"
    assert cpu_count < decision.workers <= MAX_WAITING_THREADS
    assert "waits more than it computes (CPU 2% of wall)" in reasons(decision)


def test_mixed_work_gets_more_workers_than_cpus() -> None:
    """Work waiting 75% of the time is priced at cpu_count / cpu_share processes and more, and up to MAX_THREADS threads.

    Its computing part holds the GIL, so threads cannot beat 4x; processes overlap one
    item's waits with others' computing on every core, and the more there are, the less
    the cores sit idle while a round of items waits together (``_rounds.lockstep``).
    """
    decision = decide(measure(1000, 0.01, cpu_share=0.25), attrs.evolve(LINUX, cpu_count=4), AUTO)
    assert (decision.strategy, decision.workers) == ("fork", MAX_PROCESSES_PER_CPU * 4)
    assert candidate(decision, "threads").workers == MAX_THREADS


def test_work_that_clearly_waits_gets_no_extra_processes() -> None:
    """Below a tenth of CPU per item, extra process workers are not priced: threads overlap nearly everything."""
    decision = decide(measure(1000, 0.01, cpu_share=0.05), attrs.evolve(LINUX, cpu_count=4), AUTO)
    assert decision.strategy == "threads"
    assert candidate(decision, "fork").workers == 4


def test_io_threads_never_fewer_than_cpus_on_big_machine() -> None:
    """On a machine with more CPUs than the waiting cap, waiting work still gets one thread per CPU."""
    cpus = MAX_WAITING_THREADS + 44
    decision = decide(measure(10_000, 0.05, cpu_share=0.02), attrs.evolve(LINUX, cpu_count=cpus), AUTO)
    assert candidate(decision, "threads").workers == cpus


def test_work_that_clearly_waits_gets_more_threads_than_the_executor_default() -> None:
    """200 sleeps of 20 ms (CPU 1%): a thread per item, one round, rather than 7 on 32; 0.1 ms per thread is cheap."""
    decision = decide(measure(200, 0.02, cpu_share=0.01), LINUX, AUTO)
    assert (decision.strategy, decision.workers) == ("threads", 200)
    assert "threads, up to 200" in reasons(decision)


def test_work_that_clearly_waits_stops_at_the_waiting_thread_cap() -> None:
    """Thousands of sleeps get ``MAX_WAITING_THREADS`` threads: more than the executor's default, not one per item."""
    decision = decide(measure(5000, 0.02, cpu_share=0.01), LINUX, AUTO)
    assert (decision.strategy, decision.workers) == ("threads", MAX_WAITING_THREADS)
    assert MAX_THREADS < MAX_WAITING_THREADS < 5000


def test_work_that_computes_a_fifth_stays_at_the_thread_cap() -> None:
    """Above a tenth of CPU per item the computing part holds the GIL: more than MAX_THREADS threads gain nothing."""
    decision = decide(measure(1000, 0.02, cpu_share=0.2), attrs.evolve(LINUX, cpu_count=8), AUTO)
    assert candidate(decision, "threads").workers <= MAX_THREADS


def test_io_threads_capped_by_remaining_items() -> None:
    """Ten waiting items never get more than ten threads."""
    decision = decide(measure(10, 0.5, cpu_share=0.01), LINUX, AUTO)
    assert decision.strategy == "threads"
    assert decision.workers == 10
    assert decision.chunksize == 1


@pytest.mark.parametrize("cpu_count", [1, 2, 4, 16, 96])
@pytest.mark.parametrize("facts", [LINUX, WINDOWS, MACOS], ids=["linux", "windows", "macos"])
def test_cpu_bound_workers_never_exceed_cpu_count(facts: PlatformFacts, cpu_count: int) -> None:
    """CPU-bound work never gets more workers than CPUs, on threads or processes."""
    decision = decide(measure(100_000, 1e-3), attrs.evolve(facts, cpu_count=cpu_count), AUTO)
    assert all(c.workers <= cpu_count for c in decision.candidates)
    assert decision.workers <= cpu_count


def test_tiny_work_reason_says_below_startup() -> None:
    """Tiny work stays serial, and the reasons compare the total work with the pool's fixed cost."""
    decision = decide(TINY, LINUX, AUTO)
    assert decision.strategy == "serial"
    assert "total work 40.0 ms is below the pool start-up" in reasons(decision)


def test_tiny_work_without_pickling_still_serial() -> None:
    """Even with free pickling, 40 ms of work does not pay for a pool."""
    decision = decide(attrs.evolve(TINY, pickle_s=0.0), LINUX, AUTO)
    assert decision.strategy == "serial"
    assert "no parallel strategy beats serial by more than 10%" in reasons(decision)


def test_nothing_left_reason_after_sampling() -> None:
    """When calibration consumed every item, the decision is serial and says nothing is left."""
    decision = decide(measure(10, 1e-3, sampled=10), LINUX, AUTO)
    assert decision.strategy == "serial"
    assert decision.predicted_s == 0.0
    assert "no items left after the 10 sampled" in reasons(decision)


def test_one_item_reason_when_one_left() -> None:
    """A single remaining item is run serially, with the reason."""
    decision = decide(measure(1, 5.0), LINUX, AUTO)
    assert "only 1 item left" in reasons(decision)


def test_large_arguments_make_processes_slower_than_serial() -> None:
    """When pickling costs as much as the work, every process candidate predicts slower than serial."""
    decision = decide(LARGE_ARGS, LINUX, AUTO)
    serial = candidate(decision, "serial").predicted_s
    assert all(c.predicted_s > serial for c in decision.candidates if c.strategy in PROCESSES)


def test_pickling_is_caller_bottleneck_on_many_cores() -> None:
    """More cores do not help when the caller's half of the pickling exceeds the work per item."""
    m = measure(1000, 1e-3, pickle_s=4e-3)
    decision = decide(m, attrs.evolve(LINUX, cpu_count=64), AUTO)
    assert decision.strategy == "serial"
    assert candidate(decision, "fork").predicted_s >= 1000 * 2e-3


def test_native_threads_reason_and_limit_flag_on_two_cores() -> None:
    """A function already using two cores stays serial on two cores, and the reasons say why."""
    decision = decide(NATIVE_2X, LINUX_NATIVE, AUTO)
    assert decision.strategy == "serial"
    assert not decision.limit_native_threads
    assert "already uses ~2.0 cores (native threads)" in reasons(decision)
    assert candidate(decision, "threads").predicted_s > candidate(decision, "serial").predicted_s


def test_native_threads_processes_limit_native_pools_on_many_cores() -> None:
    """On eight cores, process workers with one native thread each beat the two-core serial run."""
    decision = decide(NATIVE_2X, attrs.evolve(LINUX_NATIVE, cpu_count=8), AUTO)
    assert decision.strategy in PROCESSES
    assert decision.limit_native_threads
    assert decision.predicted_s is not None
    assert decision.predicted_s < candidate(decision, "serial").predicted_s / 2


def test_unshippable_reason_names_ship_reason() -> None:
    """An unshippable function excludes spawn and forkserver, quoting why, and fork inherits it."""
    decision = decide(UNSHIPPABLE, LINUX, AUTO)
    assert strategies(decision) == {"serial", "threads", "fork"}
    assert "cannot ship the function to forkserver/spawn: a lambda cannot be pickled" in reasons(decision)
    assert "fork workers inherit it" in reasons(decision)


@pytest.mark.parametrize("facts", [LINUX_THREADS, MACOS, WINDOWS], ids=["linux-threads", "macos", "windows"])
def test_unshippable_without_safe_fork_has_no_process_candidate(facts: PlatformFacts) -> None:
    """Without a safe fork, an unshippable function never gets spawn or forkserver."""
    decision = decide(UNSHIPPABLE, facts, AUTO)
    assert not strategies(decision) & PROCESSES
    assert "cannot ship the function" in reasons(decision)


def test_unpicklable_data_has_no_process_candidates() -> None:
    """Items that cannot be pickled leave only serial and threads."""
    decision = decide(UNPICKLABLE, LINUX, AUTO)
    assert strategies(decision) == {"serial", "threads"}
    assert "cannot be pickled: no process strategy" in reasons(decision)


def test_warm_pool_wins_where_cold_spawn_loses() -> None:
    """On Windows, 400 ms of work does not pay for starting spawn workers but does use a running pool."""
    m = measure(400, 1e-3)
    cold = decide(m, WINDOWS, AUTO)
    warm = decide(attrs.evolve(m, warm_pools=frozenset({("spawn", 2)})), WINDOWS, AUTO)
    assert cold.strategy == "serial"
    assert warm.strategy == "spawn"
    assert candidate(warm, "spawn").note == "warm pool"
    assert candidate(cold, "spawn").predicted_s - candidate(warm, "spawn").predicted_s == pytest.approx(
        DEFAULT_WORKER_STARTUP_S["spawn"]
    )


def test_measured_startup_replaces_default() -> None:
    """A measured spawn start-up replaces the default constant."""
    m = measure(400, 1e-3, worker_startup_s={"spawn": 0.01})
    assert decide(m, WINDOWS, AUTO).strategy == "spawn"


def test_warm_thread_pool_skips_startup_and_initializer() -> None:
    """A running thread pool pays neither thread start-up nor the initializer again."""
    m = measure(100, 1e-3, initializer_s=0.01)
    cold = predict("threads", 2, 10, m, LINUX, AUTO)
    warm = predict("threads", 2, 10, attrs.evolve(m, warm_pools=frozenset({("threads", 2)})), LINUX, AUTO)
    assert cold - warm == pytest.approx(2 * (100e-6 + 0.01))


@pytest.mark.parametrize(("speedup", "expected_s"), [(1.0, 4 * 0.01), (4.0, 0.01)], ids=["gil-bound", "scales"])
def test_thread_initializer_serialized_when_gil_bound(speedup: float, expected_s: float) -> None:
    """Thread initializers cost once per thread under the GIL, once in all when threads scale."""
    m = measure(1000, 1e-3, initializer_s=0.01, thread_probe_workers=4, thread_speedup=speedup)
    facts = attrs.evolve(LINUX, cpu_count=4)
    with_init = predict("threads", 4, 10, m, facts, AUTO)
    without = predict("threads", 4, 10, attrs.evolve(m, initializer_s=0.0), facts, AUTO)
    assert with_init - without == pytest.approx(expected_s)


def test_process_initializer_runs_in_parallel() -> None:
    """A process pool's initializers run in parallel: the pool pays about one initializer in wall time."""
    m = measure(1000, 1e-3, initializer_s=0.1)
    with_init = predict("spawn", 2, 10, m, LINUX, AUTO)
    without = predict("spawn", 2, 10, attrs.evolve(m, initializer_s=0.0), LINUX, AUTO)
    assert with_init - without == pytest.approx(0.1)


def test_serial_pays_initializer_once() -> None:
    """Serial runs the initializer once."""
    m = measure(1000, 1e-3, initializer_s=0.1)
    assert predict("serial", 1, 1000, m, LINUX, AUTO) == pytest.approx(1.1)


def test_max_tasks_per_worker_adds_restarts() -> None:
    """Recycling workers every few chunks adds their start-up to the prediction."""
    m = measure(1000, 1e-3)
    plain = predict("spawn", 2, 10, m, LINUX, AUTO)
    recycled = predict("spawn", 2, 10, m, LINUX, Options(max_tasks_per_worker=10))
    # 100 chunks over 2 workers, a new worker every 10: 4 restarts each.
    assert recycled - plain == pytest.approx(4 * DEFAULT_WORKER_STARTUP_S["spawn"])


@pytest.mark.parametrize("facts", [attrs.evolve(LINUX, in_worker=True), attrs.evolve(WINDOWS, in_worker=True)])
@pytest.mark.parametrize("options", [AUTO, Options(strategy="spawn", strategy_source="env")], ids=["auto", "forced"])
def test_nested_call_runs_serially_in_worker(facts: PlatformFacts, options: Options) -> None:
    """A call inside a worker always runs serially, whatever was asked."""
    decision = decide(GIL_1S, facts, options)
    assert (decision.strategy, decision.workers) == ("serial", 1)
    assert decision.reasons == ("nested call inside an autopar worker: runs serially",)
    assert not decision.limit_native_threads


def test_main_bootstrap_runs_serially_with_guard_hint() -> None:
    """A spawn child importing an unguarded __main__ runs serially and the reason names the guard."""
    decision = decide(GIL_1S, attrs.evolve(WINDOWS, in_main_bootstrap=True), AUTO)
    assert decision.strategy == "serial"
    assert 'if __name__ == "__main__":' in reasons(decision)


@pytest.mark.parametrize("strategy", ["serial", "threads", "fork", "forkserver", "spawn"])
def test_forced_strategy_is_chosen_on_linux(strategy: str) -> None:
    """A forced strategy is the one chosen, flagged as forced, with the others still listed."""
    decision = decide(IO_WAIT, LINUX, Options(strategy=strategy, strategy_source="call"))
    assert decision.strategy == strategy
    assert decision.forced
    assert decision.predicted_s == candidate(decision, strategy).predicted_s
    assert {"serial", "threads"} <= strategies(decision)
    assert f"strategy {strategy!r} forced by the call" in reasons(decision)
    assert decision.limit_native_threads is (strategy in PROCESSES)
    assert "(forced)" in str(decision)


def test_forced_fork_on_macos_is_kept_with_warning() -> None:
    """Forcing fork on macOS chooses it, lists it, and says it is unsafe."""
    decision = decide(GIL_1S, MACOS, Options(strategy="fork", strategy_source="env"))
    assert decision.strategy == "fork"
    assert "fork" in strategies(decision)
    assert "fork is unsafe: macOS" in reasons(decision)
    assert "AUTOPAR_STRATEGY" in reasons(decision)


def test_forced_spawn_with_unshippable_function_warns() -> None:
    """Forcing spawn for an unshippable function keeps it but explains the problem."""
    decision = decide(UNSHIPPABLE, LINUX, Options(strategy="spawn"))
    assert decision.strategy == "spawn"
    assert "cannot ship the function to spawn: a lambda" in reasons(decision)


def test_forced_process_with_unpicklable_data_warns() -> None:
    """Forcing a process strategy for unpicklable items keeps it but says it will fail."""
    decision = decide(UNPICKLABLE, LINUX, Options(strategy="fork"))
    assert decision.strategy == "fork"
    assert "fork will fail to send them" in reasons(decision)


def test_forced_unavailable_method_is_reported() -> None:
    """Forcing a start method the platform lacks is kept for the caller to reject, with the reason."""
    decision = decide(GIL_1S, WINDOWS, Options(strategy="fork"))
    assert decision.strategy == "fork"
    assert "fork is unavailable: fork does not exist on windows" in reasons(decision)


@pytest.mark.parametrize(
    ("options", "workers"),
    [(Options(strategy="dask"), 2), (Options(strategy="dask", workers=6), 6)],
    ids=["default-workers", "given-workers"],
)
def test_forced_plugin_strategy_uses_generic_rules(options: Options, workers: int) -> None:
    """An unknown plugin strategy gets options.workers or the CPU count, a chunk size, and no prediction."""
    decision = decide(GIL_1S, LINUX, options)
    assert decision.strategy == "dask"
    assert decision.forced
    assert decision.workers == workers
    assert decision.chunksize >= 1
    assert decision.predicted_s is None
    assert "dask" not in strategies(decision)
    assert "no cost model for 'dask'" in reasons(decision)
    assert "dask" in str(decision)


def test_options_workers_used_by_every_parallel_candidate() -> None:
    """options.workers sets the worker count of threads and every process candidate."""
    decision = decide(GIL_1S, LINUX, Options(workers=3))
    assert {c.strategy: c.workers for c in decision.candidates} == {
        "serial": 1,
        "threads": 3,
        "fork": 3,
        "forkserver": 3,
        "spawn": 3,
    }


def test_options_workers_capped_by_remaining_items() -> None:
    """options.workers never exceeds the remaining items."""
    decision = decide(measure(5, 1.0), LINUX, Options(workers=8, strategy="spawn"))
    assert decision.workers == 5


def test_options_chunksize_used_by_every_candidate() -> None:
    """options.chunksize sets every candidate's chunk size, serial included."""
    decision = decide(GIL_1S, LINUX, Options(chunksize=7))
    assert {c.chunksize for c in decision.candidates} == {7}
    assert decision.chunksize == 7


def test_options_chunksize_limits_workers_to_chunks() -> None:
    """Two chunks keep two workers busy at most, whatever the CPU count."""
    decision = decide(measure(200, 1e-2), attrs.evolve(LINUX, cpu_count=8), Options(chunksize=100))
    assert all(c.workers <= 2 for c in decision.candidates)


def test_unknown_length_assumes_long_stream() -> None:
    """Without a length, the model assumes a long stream and says so."""
    decision = decide(measure(None, 1e-3, sampled=50), LINUX, AUTO)
    assert candidate(decision, "serial").chunksize == ASSUMED_ITEMS_UNKNOWN
    assert f"assuming {ASSUMED_ITEMS_UNKNOWN:,} more items" in reasons(decision)


def test_free_threaded_reason_without_probe() -> None:
    """A free-threaded interpreter runs CPU-bound Python on threads in parallel."""
    decision = decide(measure(1000, 1e-3), FREE_THREADED, AUTO)
    assert decision.strategy == "threads"
    assert "free-threaded interpreter: threads run in parallel" in reasons(decision)


def test_free_threaded_probe_overrides_inference() -> None:
    """On a free-threaded build, a probe showing no thread gain is believed over the build."""
    m = measure(1000, 1e-3, thread_probe_workers=2, thread_speedup=1.0)
    decision = decide(m, FREE_THREADED, AUTO)
    assert decision.strategy == "fork"
    assert "threads do not help: 2 threads ran 1.00x as fast as one" in reasons(decision)


def test_gil_probe_reason_states_measured_speedup() -> None:
    """A probe without gain is reported in plain words with its figures."""
    decision = decide(GIL_1S, LINUX, AUTO)
    assert "the GIL serializes this function: 2 threads ran 1.02x as fast as one" in reasons(decision)


def test_releasing_probe_reason_states_measured_speedup() -> None:
    """A probe with gain is reported in plain words, and threads win as the simpler strategy."""
    decision = decide(RELEASES_GIL, LINUX, AUTO)
    assert "releases the GIL: 2 threads ran 1.90x as fast as one" in reasons(decision)


@pytest.mark.parametrize(("probe_workers", "cpu_count"), [(2, 2), (4, 2), (4, 4), (8, 4)])
def test_probe_speedup_reproduced_at_probe_parallelism(probe_workers: int, cpu_count: int) -> None:
    """Amdahl's fit of the probe predicts the probed speedup back, counting at most one computing thread per CPU."""
    m = attrs.evolve(RELEASES_GIL, thread_probe_workers=probe_workers, n_items=10_000)
    facts = attrs.evolve(LINUX, cpu_count=cpu_count)
    serial = predict("serial", 1, 10_000, m, facts, AUTO)
    threads = predict("threads", cpu_count, 30, m, facts, AUTO)
    # Dispatch and the tail of 30-item chunks cost well under 1% of the 10 s of work.
    assert serial / threads == pytest.approx(1.9, rel=0.02)


def test_unprobed_cpu_bound_reason_mentions_gil() -> None:
    """Without a probe, CPU-bound work is assumed to hold the GIL, and the reasons say so."""
    decision = decide(measure(1000, 1e-3), LINUX, AUTO)
    assert "computes under the GIL (CPU 100% of wall, threads not probed)" in reasons(decision)


def test_simpler_strategy_wins_close_predictions() -> None:
    """Threads win over a fork pool predicted faster by less than 10%."""
    decision = decide(RELEASES_GIL, LINUX, AUTO)
    fastest = min(decision.candidates, key=lambda c: c.predicted_s)
    assert decision.strategy == "threads"
    assert decision.predicted_s is not None
    assert decision.predicted_s <= fastest.predicted_s * 1.10
    if fastest.strategy != "threads":
        assert "within 10%" in reasons(decision)


def test_chosen_reason_compares_with_serial() -> None:
    """A parallel choice states its prediction against serial."""
    decision = decide(GIL_1S, LINUX, AUTO)
    assert "fork with 2 workers: predicted" in reasons(decision)
    assert "against 1.00 s serially" in reasons(decision)


@pytest.mark.parametrize("strategy", ["threads", "fork", "spawn"])
def test_chunk_overhead_at_most_five_percent_when_items_many(strategy: str) -> None:
    """With many items, chunks are long enough that dispatch costs at most about 5% of a chunk."""
    m = measure(1_000_000, 2e-6)
    chosen = candidate(decide(m, LINUX, AUTO), strategy)
    overhead_s = 30e-6 if strategy == "threads" else PROCESS_CHUNK_OVERHEAD_S
    assert overhead_s <= 0.05 * chosen.chunksize * 2e-6 * 1.001


@pytest.mark.parametrize("strategy", ["threads", "fork"])
def test_at_least_four_chunks_per_worker(strategy: str) -> None:
    """Chunks leave at least four per worker when the items allow it, for balance."""
    m = measure(10_000, 1e-2, cpu_share=1.0, thread_probe_workers=2, thread_speedup=1.9)
    chosen = candidate(decide(m, attrs.evolve(LINUX, cpu_count=8), AUTO), strategy)
    assert math.ceil(10_000 / chosen.chunksize) >= 4 * chosen.workers


def test_skewed_items_get_smaller_chunks() -> None:
    """When the slowest item takes far longer than the mean, chunks shrink, and the reasons say so."""
    even = decide(measure(100_000, 1e-4), LINUX, AUTO)
    skewed = decide(measure(100_000, 1e-4, item_wall_max_s=1e-2), LINUX, AUTO)
    assert candidate(skewed, "fork").chunksize < candidate(even, "fork").chunksize
    assert "item times are skewed" in reasons(skewed)


def test_serial_chunksize_covers_remaining_items() -> None:
    """Serial takes every remaining item in one chunk."""
    decision = decide(measure(500, 1e-3, sampled=20), LINUX, AUTO)
    assert candidate(decision, "serial").chunksize == 480


def test_predict_matches_candidate_predictions() -> None:
    """``predict`` returns the figure listed for each candidate."""
    decision = decide(GIL_1S, LINUX, AUTO)
    for c in decision.candidates:
        assert predict(c.strategy, c.workers, c.chunksize, GIL_1S, LINUX, AUTO) == c.predicted_s


def test_predict_rejects_unknown_strategy() -> None:
    """``predict`` raises ValueError naming a strategy it has no model for."""
    with pytest.raises(ValueError, match="'dask' has no cost model"):
        predict("dask", 2, 1, GIL_1S, LINUX, AUTO)


def test_decide_is_deterministic() -> None:
    """The same inputs give equal decisions."""
    assert decide(IO_WAIT, LINUX, AUTO) == decide(IO_WAIT, LINUX, AUTO)


def test_decision_renders_and_serializes() -> None:
    """The decision renders its table and converts to a dictionary."""
    decision = decide(GIL_1S, LINUX, AUTO)
    assert str(decision).startswith("autopar decision: fork with 2 worker(s)")
    assert decision.to_dict()["strategy"] == "fork"


def test_nan_and_negative_measurements_are_ignored() -> None:
    """Non-finite or negative figures from a noisy calibration never make the model raise."""
    m = measure(100, float("nan"), pickle_s=-1.0, thread_probe_workers=2, thread_speedup=float("inf"))
    decision = decide(attrs.evolve(m, item_cpu_s=float("inf"), initializer_s=float("-inf")), LINUX, AUTO)
    assert decision.strategy == "serial"
    assert all(math.isfinite(c.predicted_s) for c in decision.candidates)


PLATFORMS = [LINUX, LINUX_THREADS, LINUX_NATIVE, LINUX_314, MACOS, WINDOWS, FREE_THREADED, NO_PROCESSES]
_seconds = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)


@st.composite
def workloads(draw: st.DrawFn) -> tuple[Measurements, PlatformFacts]:
    """Random valid measurements and platform facts."""
    facts = attrs.evolve(
        draw(st.sampled_from(PLATFORMS)),
        cpu_count=draw(st.integers(1, 128)),
        gil_enabled=draw(st.booleans()),
    )
    wall = draw(_seconds)
    n_items = draw(st.none() | st.integers(0, 10**7))
    m = Measurements(
        n_items=n_items,
        sampled=draw(st.integers(0, 200)),
        item_wall_s=wall,
        item_cpu_s=wall * draw(st.floats(0.0, 1.0)),
        item_process_cpu_s=wall * draw(st.floats(0.0, 8.0)),
        item_wall_max_s=wall * draw(st.floats(1.0, 100.0)),
        func_pickle_bytes=draw(st.integers(0, 10**6)),
        item_pickle_bytes=draw(st.floats(0.0, 1e8)),
        result_pickle_bytes=draw(st.floats(0.0, 1e8)),
        pickle_s=draw(st.floats(0.0, 1.0)),
        thread_probe_workers=draw(st.integers(0, 8)),
        thread_speedup=draw(st.none() | st.floats(0.05, 16.0)),
        shippable=draw(st.booleans()),
        data_picklable=draw(st.booleans()),
        worker_startup_s=draw(st.dictionaries(st.sampled_from(sorted(PROCESSES)), st.floats(0.0, 2.0))),
        initializer_s=draw(st.floats(0.0, 1.0)),
        warm_pools=draw(st.frozensets(st.tuples(st.sampled_from(["threads", *sorted(PROCESSES)]), st.integers(1, 8)))),
    )
    return m, facts


def remaining(m: Measurements) -> int:
    """The items left to run, as the model counts them."""
    return ASSUMED_ITEMS_UNKNOWN if m.n_items is None else max(m.n_items - m.sampled, 0)


@settings(max_examples=300)
@given(workloads())
def test_auto_choice_within_ten_percent_of_fastest_for_any_workload(case: tuple[Measurements, PlatformFacts]) -> None:
    """For any valid measurements the auto choice is within 10% of the fastest candidate, with sane figures."""
    m, facts = case
    decision = decide(m, facts, AUTO)
    assert decision.predicted_s is not None
    fastest = min(c.predicted_s for c in decision.candidates)
    assert decision.predicted_s <= fastest * 1.10
    assert all(math.isfinite(c.predicted_s) and c.predicted_s >= 0 for c in decision.candidates)
    assert decision.workers >= 1
    assert decision.chunksize >= 1
    assert decision.workers <= max(remaining(m), 1)
    assert decision.strategy in str(decision)
    assert decision.limit_native_threads is (decision.strategy in PROCESSES)


@settings(max_examples=300)
@given(workloads())
def test_cpu_bound_work_gets_more_workers_than_cpus_only_to_fill_a_last_round(
    case: tuple[Measurements, PlatformFacts],
) -> None:
    """CPU-bound work under the GIL gets more workers than CPUs only in processes, for a few items, when faster.

    Never threads; only for at most ``FILLER_ITEMS_PER_CPU`` items per CPU; only where the
    prediction beats the same strategy with one worker per CPU.
    """
    m, facts = case
    m = attrs.evolve(m, item_cpu_s=m.item_wall_s * 0.95)
    facts = attrs.evolve(facts, gil_enabled=True)
    for c in decide(m, facts, AUTO).candidates:
        if c.workers <= facts.cpu_count:
            continue
        assert c.strategy in PROCESSES
        assert remaining(m) <= FILLER_ITEMS_PER_CPU * facts.cpu_count
        assert c.predicted_s < predict(c.strategy, facts.cpu_count, c.chunksize, m, facts, AUTO)


@pytest.mark.parametrize(
    ("chunks", "workers", "busy", "expected"),
    [
        (5, 2, (), 3.0),  # the last chunk alone
        (5, 3, (), 2.5),  # 3 then 2 at once: the cores never idle
        (4, 2, (), 2.0),
        (5, 2, (0.5, 0.5), 3.5),  # two workers first finish half an item each
        (5, 5, (0.5, 0.5), 3.0),  # every item at once: 6 items' work on 2 cores
        (1001, 2, (), 501.0),  # past the simulated count: rounds counted
    ],
)
def test_rounds_of_equal_chunks_on_workers_sharing_two_cores(
    chunks: int, workers: int, busy: tuple[float, ...], expected: float
) -> None:
    assert rounds_s(chunks, 1.0, workers, 2.0, busy) == pytest.approx(expected)


def test_items_in_flight_in_the_early_pool_make_more_workers_pay() -> None:
    """5 items left and 2 half-done in the early forkserver pool of 2 (2 CPUs): a third worker fills the gaps."""
    m = measure(6, 0.3, sampled=1, calibration_s=0.366, speculative_items=2, speculative_out_s=(0.286, 0.286))
    early = attrs.evolve(m, early_pool=("forkserver", 2), warm_pools=frozenset({("forkserver", 2)}))
    facts = attrs.evolve(LINUX, start_methods=("spawn", "forkserver"), default_start_method="forkserver")
    busy_2 = predict("forkserver", 2, 1, early, facts, AUTO)
    assert busy_2 > predict("forkserver", 2, 1, attrs.evolve(early, early_pool=None), facts, AUTO)
    decision = decide(early, facts, AUTO)
    assert (decision.strategy, decision.workers) == ("forkserver", 3)
    assert decision.predicted_s is not None
    assert decision.predicted_s < busy_2


def test_growing_the_pool_started_before_measuring_costs_only_the_added_workers() -> None:
    """One forkserver worker added to the early pool of 2 costs half a boot on 2 CPUs; a new pool of 3, two boots."""
    m = measure(5, 0.3, worker_startup_s={"forkserver": 0.2})
    boots = (predict("forkserver", 3, 1, m, LINUX, AUTO) - predict("forkserver", 2, 1, m, LINUX, AUTO)) + 0.15
    early = attrs.evolve(m, warm_pools=frozenset({("forkserver", 2)}), early_pool=("forkserver", 2))
    grown = predict("forkserver", 3, 1, early, LINUX, AUTO) - predict("forkserver", 2, 1, early, LINUX, AUTO) + 0.15
    assert boots == pytest.approx(0.2, abs=1e-3)  # 2 boots for 3 workers on 2 CPUs against 1, less the 0.15 s saved
    assert grown == pytest.approx(0.1, abs=1e-3)  # the added worker's boot, shared by the 2 CPUs
    forkserver = [c for c in decide(early, LINUX, AUTO).candidates if c.strategy == "forkserver"]
    assert [c.workers for c in forkserver] == [3]  # not 5: three more boots cost more than unequal cores


def test_growing_the_early_fork_pool_costs_the_callers_forks_too() -> None:
    """Each fork worker added to the early pool costs the caller about 2 ms to fork, in turn, besides its shared boot.

    So 4 items of 17 ms left beside an early pool of 2 keep 2 workers (measured: 59-63 ms for the call on 2,
    67-70 ms on 4), where 4 items of 0.2 s get one each.
    """
    m = measure(4, 0.017, worker_startup_s={"fork": 0.0037})
    early = attrs.evolve(m, warm_pools=frozenset({("fork", 2)}), early_pool=("fork", 2))
    added = predict("fork", 4, 1, early, LINUX, AUTO) - predict("fork", 2, 1, early, LINUX, AUTO)
    run_2, run_4 = 2 * 0.017 + UNEVEN_SHARE * 0.017, 4 * 0.017 / 2  # 2 rounds and a quarter, against 4 items shared
    assert added == pytest.approx(2 * (0.0037 / 2 + 0.002) + run_4 - run_2, abs=5e-4)
    assert decide(early, LINUX, AUTO).workers == 2
    coarse = attrs.evolve(
        early, n_items=4, item_wall_s=0.2, item_cpu_s=0.2, item_process_cpu_s=0.2, item_wall_max_s=0.2
    )
    assert decide(coarse, LINUX, AUTO).workers == 4


@pytest.mark.parametrize(
    ("items", "cpus", "item_s", "workers"),
    [
        (5, 2, 0.3, 5),
        (7, 2, 0.3, 7),
        (3, 2, 0.3, 3),
        (8, 2, 0.3, 8),
        (6, 2, 0.3, 6),
        (4, 4, 0.3, 4),
        (6, 4, 0.3, 6),
        (40, 2, 0.3, 2),
        (8, 2, 0.03, 2),
        (5, 2, 0.03, 2),
    ],
)
def test_a_few_coarse_items_run_one_per_worker_sharing_the_cpus(
    items: int, cpus: int, item_s: float, workers: int
) -> None:
    """5 items of 0.3 s on 2 CPUs: 5 fork workers sharing the cores end with 2.5 items' time, not 3.

    A worker per item also spares the last round the cores' unequal speeds, which cost a
    quarter of an item on 2 workers; short items, whose quarter costs less than the added
    workers' start-up, and calls of many items, keep one worker per CPU.
    """
    facts = attrs.evolve(LINUX, cpu_count=cpus)
    decision = decide(measure(items, item_s), facts, AUTO)
    assert (decision.strategy, decision.workers) == ("fork", workers)
    if workers > cpus:
        assert decision.predicted_s is not None
        saved = predict("fork", cpus, 1, measure(items, item_s), facts, AUTO) - decision.predicted_s
        assert saved > 0


def test_unequal_cores_cost_a_quarter_chunk_only_with_fewer_workers_than_chunks() -> None:
    """The uneven tail: none for one worker, or a worker per chunk; a quarter of a chunk otherwise."""
    assert uneven_tail_s(8, 0.2, 1) == 0.0
    assert uneven_tail_s(8, 0.2, 8) == 0.0
    assert uneven_tail_s(8, 0.2, 2) == pytest.approx(UNEVEN_SHARE * 0.2)
    assert uneven_tail_s(8, 0.2, 7) == pytest.approx(UNEVEN_SHARE * 0.2)


@settings(max_examples=200)
@given(
    workloads(),
    st.sampled_from(["serial", "threads", *sorted(PROCESSES), "dask"]),
    st.none() | st.integers(1, 64),
    st.none() | st.integers(1, 10**6),
)
def test_forced_choice_respected_for_any_workload(
    case: tuple[Measurements, PlatformFacts], strategy: str, workers: int | None, chunksize: int | None
) -> None:
    """Any forced strategy, worker count and chunk size come back in the decision, within the item count."""
    m, facts = case
    decision = decide(
        m, attrs.evolve(facts, in_worker=False), Options(strategy=strategy, workers=workers, chunksize=chunksize)
    )
    assert (decision.strategy, decision.forced) == (strategy, True)
    assert 1 <= decision.workers <= max(remaining(m), 1)
    if workers is not None and strategy != "serial":
        assert decision.workers == min(
            workers, max(remaining(m), 1), math.ceil(max(remaining(m), 1) / decision.chunksize)
        )
    if chunksize is not None:
        assert decision.chunksize == chunksize
    assert decision.chunksize >= 1
    assert strategy in str(decision)


def test_low_cpu_share_without_waits_counts_as_computing() -> None:
    """Low thread CPU with no blocking waits means a busy machine, not I/O: no many-thread pool for it."""
    contended = attrs.evolve(IO_WAIT, item_waits=0.0, thread_speedup=1.0, thread_probe_workers=2)
    decision = decide(contended, LINUX, AUTO)
    assert decision.strategy != "threads"
    assert "waits more than it computes" not in reasons(decision)


def test_time_queued_for_a_cpu_is_not_waiting() -> None:
    """CPU-bound items on a loaded machine, with a few GIL hand-offs counted as waits, still compute.

    Measured: 0.3 s of countdown ran 1.18 s of wall with 0.41 s of thread CPU and 26 voluntary
    switches (a helper thread took the GIL now and then); 0.75 s of it the thread queued behind
    other processes for a CPU.  Without that queue time the share is 0.35 and the model took it
    for waiting work, with six process workers on two CPUs (of 40 items: a few coarse ones get one each).
    """
    loaded = measure(40, 1.18, cpu_share=0.41 / 1.18)
    queued = attrs.evolve(loaded, item_waits=26.0, item_queued_s=0.75)
    work = workload(queued, LINUX)
    assert work.cpu_share > 0.9
    assert not work.blocks
    assert decide(queued, LINUX, AUTO).workers == LINUX.cpu_count
    # The same wall and CPU with the queue time unknown read as waiting work.
    assert workload(attrs.evolve(loaded, item_waits=26.0), LINUX).blocks


def test_a_sample_is_computing_when_its_cpu_fills_the_time_it_was_not_queued() -> None:
    """``is_computing`` discounts the time the thread queued for a CPU; unknown queue time keeps the waits rule."""
    busy = SerialSample(count=1, wall_s=1.18, cpu_s=0.41, process_s=0.41, max_item_s=1.18, waits=26)
    assert not is_computing(busy)
    assert is_computing(attrs.evolve(busy, queued_s=0.75))
    # Queued a little, blocked most of the time: waiting.
    assert not is_computing(attrs.evolve(busy, queued_s=0.05))


def test_waiting_work_with_measured_waits_uses_threads_despite_a_noisy_probe() -> None:
    """Work that blocks once per item goes to threads even when a short probe under-read its scaling."""
    waiting = attrs.evolve(IO_WAIT, item_waits=1.0, thread_speedup=0.9, thread_probe_workers=2)
    decision = decide(waiting, LINUX, AUTO)
    assert decision.strategy == "threads"
    assert decision.workers > LINUX.cpu_count


# --- forced strategies, planned without measurements --------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "facts", "workers"),
    [
        ("serial", LINUX, 1),
        ("threads", LINUX, 6),
        ("threads", attrs.evolve(LINUX, cpu_count=64), 32),
        ("fork", LINUX, 2),
        ("spawn", attrs.evolve(LINUX, cpu_count=8), 8),
    ],
)
def test_forced_decision_default_workers(strategy: str, facts: PlatformFacts, workers: int) -> None:
    """A forced strategy with no worker count gets one per CPU, threads cpu_count + 4 up to 32, serial one."""
    decision = forced_decision(facts, Options(strategy=strategy, strategy_source="call"), 1000)
    assert (decision.strategy, decision.workers) == (strategy, workers)
    assert decision.forced
    assert decision.chunksize == math.ceil(1000 / (workers * CHUNKS_PER_WORKER))
    assert f"strategy {strategy!r} forced by the call" in reasons(decision)


def test_forced_decision_never_has_more_workers_than_items() -> None:
    """Three items get at most three workers, whatever the caller asked for."""
    decision = forced_decision(LINUX, Options(strategy="threads", workers=10), 3)
    assert decision.workers == 3
    assert decision.chunksize == 1


def test_forced_decision_keeps_given_chunksize_and_streams_get_adaptive_chunks() -> None:
    """A given chunk size is kept; with no length (a stream), chunk size 0 lets dispatch size chunks."""
    assert forced_decision(LINUX, Options(strategy="fork", chunksize=7), 1000).chunksize == 7
    assert forced_decision(LINUX, Options(strategy="fork"), None).chunksize == 0


def test_forced_decision_dask_uses_every_cluster_thread() -> None:
    """Forced dask with no worker count uses every thread of the cluster."""
    decision = forced_decision(LINUX, Options(strategy="dask"), 10_000, cluster_threads=48)
    assert decision.workers == 48
    assert forced_decision(LINUX, Options(strategy="dask", workers=4), 10_000, cluster_threads=48).workers == 4


def test_forced_decision_says_when_the_start_method_is_unsafe() -> None:
    """Forced fork in a process with threads is planned, with the reason it is unsafe and who forced it."""
    decision = forced_decision(LINUX_THREADS, Options(strategy="fork", strategy_source="env"), 100)
    assert decision.strategy == "fork"
    assert "fork is unsafe" in reasons(decision)
    assert "AUTOPAR_STRATEGY" in reasons(decision)


@given(
    n_items=st.one_of(st.none(), st.integers(0, 10**6)),
    workers=st.one_of(st.none(), st.integers(1, 512)),
    cpus=st.integers(1, 256),
    strategy=st.sampled_from(["serial", "threads", "fork", "forkserver", "spawn"]),
)
@settings(max_examples=200, deadline=None)
def test_forced_decision_property(n_items: int | None, workers: int | None, cpus: int, strategy: str) -> None:
    """Forced plans always have at least one worker, no more than the items, and chunks that cover the input."""
    decision = forced_decision(
        attrs.evolve(LINUX, cpu_count=cpus), Options(strategy=strategy, workers=workers), n_items
    )
    assert decision.workers >= 1
    if n_items:
        assert decision.workers <= n_items
        assert decision.chunksize * decision.workers * CHUNKS_PER_WORKER >= n_items
    if strategy == "serial":
        assert decision.workers == 1


def test_items_half_waiting_half_computing_run_on_more_processes_than_cpus() -> None:
    """40 items that sleep 25 ms, then compute 25 ms, on 2 CPUs: 8 processes, not the 4 that would
    keep both cores busy only if every item waited and computed in step."""
    decision = decide(measure(40, 0.05, cpu_share=0.5, item_waits=1.0), LINUX, AUTO)
    assert (decision.strategy, decision.workers) == ("fork", 8)
    assert "waits part of each item (CPU 50% of wall)" in reasons(decision)
    threads = candidate(decision, "threads")
    assert threads.workers > LINUX.cpu_count


def test_process_workers_above_the_cpus_hold_no_more_items_than_half_the_available_memory() -> None:
    """Items that each hold 1 GiB: 3 GiB available gives one worker per CPU, 16 GiB one per item (or per wait)."""
    tight = attrs.evolve(LINUX, memory_available_bytes=3 * 2**30)
    roomy = attrs.evolve(LINUX, memory_available_bytes=16 * 2**30)
    roomier = attrs.evolve(LINUX, memory_available_bytes=64 * 2**30)
    coarse = measure(8, 0.3, peak_growth_bytes=2**30)
    assert decide(coarse, tight, AUTO).workers == LINUX.cpu_count
    assert decide(coarse, roomy, AUTO).workers == 8
    assert decide(measure(8, 0.3), tight, AUTO).workers == 8  # no item memory measured: no limit
    mixed = measure(40, 0.05, cpu_share=0.5, item_waits=1.0, peak_growth_bytes=2**30)
    limited = decide(mixed, tight, AUTO)
    assert (limited.strategy, limited.workers) == ("fork", 2)
    assert all(c.workers <= 2 for c in limited.candidates)  # 32 threads would hold 32 GiB too
    assert "each item holds about 1,024 MiB: at most 2 at once" in reasons(limited)
    assert (decide(mixed, roomy, AUTO).strategy, decide(mixed, roomy, AUTO).workers) == ("fork", 8)
    assert "each item holds about 1,024 MiB: at most 8 at once" in reasons(decide(mixed, roomy, AUTO))
    unlimited = decide(attrs.evolve(mixed, peak_growth_bytes=0), LINUX, AUTO)
    assert decide(mixed, roomier, AUTO).workers == unlimited.workers
    assert "at once in the memory available" not in reasons(decide(mixed, roomier, AUTO))


@pytest.mark.parametrize(
    ("peak", "available", "cpus", "most"),
    [
        (0, 8 * 2**30, 2, NO_MEMORY_LIMIT),
        (2**30, 0, 2, NO_MEMORY_LIMIT),
        (32 * 2**20, 2**30, 2, NO_MEMORY_LIMIT),
        (2**30, 3 * 2**30, 2, 2),
        (256 * 2**20, 2 * 2**30, 2, 4),
        (256 * 2**20, 2 * 2**30, 8, 8),
    ],
)
def test_memory_workers_is_half_the_available_memory_over_an_items_peak_never_below_the_cpus(
    peak: int, available: int, cpus: int, most: int
) -> None:
    facts = attrs.evolve(LINUX, cpu_count=cpus, memory_available_bytes=available)
    assert memory_workers(measure(8, 0.3, peak_growth_bytes=peak), facts) == most


def test_daemonic_process_decides_among_serial_and_threads_and_says_why() -> None:
    """A daemonic process may not start processes: no process candidate, and the reasons say so."""
    decision = decide(GIL_1S, attrs.evolve(LINUX, daemon=True), AUTO)
    assert strategies(decision) <= {"serial", "threads"}
    assert "daemonic" in reasons(decision)


def test_failed_start_method_gives_way_to_the_next_candidate() -> None:
    """After fork failed to start its workers, the same measurements choose another method and say why."""
    before = decide(GIL_1S, LINUX, AUTO)
    assert before.strategy == "fork"
    facts = attrs.evolve(LINUX, start_failures=(("fork", "too many open files"),))
    after = decide(GIL_1S, facts, AUTO)
    assert "fork" not in strategies(after)
    assert f"fork workers could not start, so {after.strategy} runs instead: too many open files" in reasons(after)
    every = attrs.evolve(facts, start_failures=tuple((m, "no processes") for m in ALL_POSIX))
    assert decide(GIL_1S, every, AUTO).strategy in {"serial", "threads"}


BY_VALUE = [
    ("linux-3.13", attrs.evolve(LINUX, python_version=(3, 13))),
    ("linux-3.14", LINUX_314),
    ("macos", MACOS),
    ("windows", WINDOWS),
]


@pytest.mark.parametrize(("name", "facts"), BY_VALUE, ids=[n for n, _ in BY_VALUE])
def test_function_of_python_c_sent_by_value_gets_processes(name: str, facts: PlatformFacts) -> None:
    """CPU-bound work of a function typed into ``python -c`` runs in processes on every platform, as a module's would."""
    interactive = attrs.evolve(facts, main_importable=False)
    decision = decide(GIL_1S, interactive, AUTO)
    assert decision.strategy in PROCESSES
    assert decision.strategy == decide(GIL_1S, facts, AUTO).strategy


@pytest.mark.parametrize(("name", "facts"), BY_VALUE[1:], ids=[n for n, _ in BY_VALUE[1:]])
def test_function_holding_a_lock_falls_back_with_the_reason(name: str, facts: PlatformFacts) -> None:
    """Where fork is out, a function that cannot go even by value runs on threads or serially, and says why."""
    held = attrs.evolve(GIL_1S, shippable=False, ship_reason="the closure cell 'lock' holds <unlocked _thread.lock>")
    decision = decide(held, facts, AUTO)
    assert decision.strategy not in PROCESSES
    assert "closure cell 'lock'" in reasons(decision)


def test_no_usable_dev_shm_decides_among_serial_and_threads_and_says_why() -> None:
    """Without a usable /dev/shm no process pool starts: no process candidate, and the reasons name /dev/shm."""
    facts = attrs.evolve(LINUX, shm_problem="/dev/shm is mounted read-only")
    decision = decide(GIL_1S, facts, AUTO)
    assert strategies(decision) <= {"serial", "threads"}
    assert "/dev/shm is mounted read-only: no process strategy" in reasons(decision)


def test_threads_that_could_not_start_leave_serial_with_the_reason() -> None:
    """When threads would not start (a process or thread limit), nothing else would either: serial, saying why."""
    facts = attrs.evolve(LINUX, start_failures=(("threads", "RLIMIT_NPROC is 1"),))
    decision = decide(IO_WAIT, facts, AUTO)
    assert (decision.strategy, decision.workers) == ("serial", 1)
    assert reasons(decision) == "threads could not start, so the rest runs serially in the caller: RLIMIT_NPROC is 1"


def test_waiting_items_on_process_workers_wait_together_then_share_the_cores() -> None:
    """Below both bounds, rising with workers, every worker busy up to the CPU count, the CPU bound far above it."""
    counts = (1, 2, 4, 6, 8, 16, 64, 10_000)
    values = [lockstep(w, 0.3, 2) for w in counts]
    assert values == sorted(values)
    assert all(v <= min(w, 2 / 0.3) + 1e-9 for v, w in zip(values, counts, strict=False))
    assert lockstep(2, 0.3, 2) == pytest.approx(2)
    assert lockstep(10_000, 0.3, 2) == pytest.approx(2 / 0.3, rel=0.01)
    # 40 items that sleep 20 ms, then hash for 10 ms, on 2 cores: measured 618, 406, 295 and 255 ms.
    priced = [40 * 0.030 / lockstep(w, 1 / 3, 2) for w in (2, 4, 8, 16)]
    assert priced == pytest.approx([0.600, 0.400, 0.300, 0.250])


def test_bench_mixed_items_get_more_workers_than_their_cpu_share_calls_for() -> None:
    """Items that wait 24.5 ms, then compute 10.5 ms of Python, on 2 CPUs: 16 fork workers.

    Measured, 39 items on a started pool: 8 workers 0.276 s, 12 0.252 s, 16 0.251 s (4 took 0.45 s, 8 0.33 s with
    start-up).  A first call has the pool it started before measuring (2 workers, booted in 4 ms each); a second
    one the pool of 8 the first left idle.  Threads (32: about 0.44 s) cannot run the computing part in parallel.
    """
    work = measure(39, 0.035, cpu_share=0.3, item_waits=1.0, worker_startup_s={"fork": 0.004})
    cold = attrs.evolve(work, early_pool=("fork", 2), warm_pools=frozenset({("fork", 2)}))
    warm = attrs.evolve(work, warm_pools=frozenset({("fork", 8)}))
    for m in (cold, warm):
        decision = decide(m, LINUX, AUTO)
        assert (decision.strategy, decision.workers) == ("fork", 16)
        assert predict("fork", 4, 1, m, LINUX, Options()) > 1.25 * predict("fork", 8, 1, m, LINUX, Options())
        assert predict("fork", 8, 1, m, LINUX, Options()) > predict("fork", 16, 1, m, LINUX, Options())


def test_workers_that_must_import_again_what_the_first_item_imported_pay_for_it() -> None:
    """A first item's import (``warmup_s``) is paid again by each forkserver worker, not by workers forked after it."""
    work = measure(10, 0.03)
    assert decide(work, LINUX_314, AUTO).strategy == "forkserver"
    assert decide(attrs.evolve(work, warmup_items=1, warmup_s=0.5), LINUX_314, AUTO).strategy == "serial"
    assert decide(attrs.evolve(work, warmup_items=1, warmup_s=0.5), LINUX, AUTO).strategy == "fork"


def test_the_outcome_line_sets_the_call_wall_time_against_its_whole_prediction() -> None:
    """A calibrated call: calibration (and its items) plus the rest's prediction, against the wall time."""
    m = measure(10, 0.1, sampled=3, calibration_s=0.1)
    line = render_outcome(Decision(strategy="fork", workers=2, chunksize=1, predicted_s=0.4, measurements=m), 0.6, 10)
    assert line == (
        "autopar: fork took 600.0 ms for 10 item(s), calibration 100.0 ms on 3 item(s) included; "
        "predicted 500.0 ms (400.0 ms for the rest), +20% off"
    )


def test_the_outcome_line_of_a_call_on_cached_measurements_names_no_calibration() -> None:
    """Cached measurements (nothing sampled in this call): the prediction is the whole call's."""
    m = measure(10, 0.1, sampled=0, calibration_s=0.1)
    decision = Decision(strategy="threads", workers=4, chunksize=1, predicted_s=0.4, measurements=m)
    assert predicted_call_s(decision) == 0.4
    assert (
        render_outcome(decision, 0.3, 10)
        == "autopar: threads took 300.0 ms for 10 item(s); predicted 400.0 ms, -25% off"
    )
    assert render_outcome(attrs.evolve(decision, predicted_s=None), 0.3, 10) is None


def test_process_chunks_aim_at_longer_work_than_thread_chunks() -> None:
    """2,000 items of 1 ms: a fork worker's chunks hold about PLANNED_CHUNK_S of work, a thread's TARGET_CHUNK_S.

    A process worker waits a round trip through the caller for each chunk; a thread does not leave the process.
    """
    decision = decide(measure(2000, 1e-3), LINUX, Options())
    fork, threads = candidate(decision, "fork"), candidate(decision, "threads")
    assert fork.chunksize == pytest.approx(PLANNED_CHUNK_S / 1e-3, rel=0.05)
    assert threads.chunksize == pytest.approx(TARGET_CHUNK_S / 1e-3, rel=0.05)
    few = decide(measure(200, 1e-3), LINUX, Options())  # still four chunks per worker at least
    assert candidate(few, "fork").chunksize <= 200 // (candidate(few, "fork").workers * 4)
