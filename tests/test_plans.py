"""The call plan, the probe plan and the shared rules of the core, driven by injected facts and records."""

from __future__ import annotations

import functools
import math

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopar._core._identity import function_identity, unwrap_function
from autopar._core._plans import (
    Calibrate,
    Reuse,
    Run,
    Speculate,
    plan_call,
    speculation_plan,
    workers_fed,
)
from autopar._core._safety import usable_process_methods
from autopar._core._sampling import (
    CARRY_MAX_WORK_S,
    CARRY_MIN_ITEM_S,
    MAX_SAMPLE_ITEMS,
    MAX_WARMUP_ITEMS,
    MIN_C_SHARE_TO_PROBE,
    PROFILE_S,
    SERIAL_SAMPLE_S,
    SERIAL_SAMPLE_SHARE,
    ProbePlan,
    next_batch_size,
    probe_after_profile,
    probe_plan,
    profile_items,
    profiles_sample,
    sample_batch_size,
    sample_done,
    warmup_batch,
)
from autopar._core._sizing import MAX_THREADS, guided_size, worker_options
from autopar._core._workload import is_clearly_waiting, is_computing, probe_speedup, workload
from autopar._errors import SerializationError
from autopar._model import Measurements, Options, PlatformFacts, SerialSample, Shipping
from platforms import LINUX, LINUX_314, LINUX_THREADS, WINDOWS

SHIPS = Shipping(name="f")
LAMBDA = Shipping(
    name="<lambda>",
    problem="it is a lambda, and it cannot be sent by value either: the closure cell 'lock' holds <lock>",
    fork_problem="it is a lambda",
)
LAMBDA_BY_VALUE = Shipping(name="<lambda>", problem="it is a lambda", fork_problem="it is a lambda", by_value=True)
MAIN_FUNCTION = Shipping(name="work", problem="it is defined in the main module", by_value=True)
MACOS = PlatformFacts(
    system="darwin", python_version=(3, 13), start_methods=("spawn", "fork", "forkserver"), cpu_count=8
)
AUTO = Options()


def _plan(facts: PlatformFacts = LINUX, opts: Options = AUTO, n_items: int | None = 100, **kw: object) -> object:
    kw.setdefault("shipping", SHIPS)
    return plan_call(facts, opts, n_items, **kw)  # type: ignore[arg-type]


# -- plan_call ----------------------------------------------------------------------


def test_empty_input_runs_serially_without_measuring() -> None:
    """An empty input needs no calibration and no pool."""
    plan = _plan(n_items=0)
    assert isinstance(plan, Run)
    assert plan.decision.strategy == "serial"
    assert plan.decision.reasons == ("empty input",)


@pytest.mark.parametrize(
    ("facts", "words", "warned"),
    [
        (attrs.evolve(LINUX, in_worker=True), "nested call", False),
        (attrs.evolve(WINDOWS, in_main_bootstrap=True), "imports __main__", True),
    ],
)
def test_nested_calls_and_a_reimported_main_run_serially(facts: PlatformFacts, words: str, warned: bool) -> None:
    """Inside a worker, or while a child imports an unguarded main, a call runs serially, forced or not."""
    for opts in (AUTO, Options(strategy="spawn")):
        plan = _plan(facts, opts)
        assert isinstance(plan, Run)
        assert plan.decision.strategy == "serial"
        assert words in plan.decision.reasons[0]
        assert (plan.log_warning is not None) is warned


def test_auto_calibrates_then_reuses_cached_measurements() -> None:
    """A first auto call calibrates (with a thread probe unless an initializer is set); a cached one reuses."""
    assert _plan() == Calibrate(thread_probe=True, remember=True, speculate=Speculate("fork", 2, 1), carry=True)
    assert _plan(opts=Options(initializer=print)) == Calibrate(thread_probe=False, remember=True)
    cached = Measurements(n_items=100, item_wall_s=0.01)
    assert _plan(cached=cached) == Reuse(cached)


@pytest.mark.parametrize(
    "opts", [Options(workers=4), Options(retries=2), Options(initializer=print)], ids=["workers", "retries", "init"]
)
def test_a_probe_never_carries_on_where_the_caller_set_workers_retries_or_an_initializer(opts: Options) -> None:
    """Carrying on would run more threads than asked, items that never retry, or threads without the initializer."""
    plan = _plan(opts=opts)
    assert isinstance(plan, Calibrate)
    assert not plan.carry


def test_forced_strategy_runs_without_calibration_even_with_cached_measurements() -> None:
    """A forced strategy is planned at once: its workers come from the platform and the options."""
    plan = _plan(opts=Options(strategy="threads", workers=3), cached=Measurements(n_items=100))
    assert isinstance(plan, Run)
    assert (plan.decision.strategy, plan.decision.workers, plan.decision.forced) == ("threads", 3, True)
    assert plan.unsafe is None


def test_forced_unsafe_fork_carries_the_reason_to_warn() -> None:
    """Forcing fork while threads run is planned, with the reason for an UnsafeStrategyWarning."""
    plan = _plan(LINUX_THREADS, Options(strategy="fork"))
    assert isinstance(plan, Run)
    assert plan.decision.strategy == "fork"
    assert plan.unsafe is not None
    assert "threads" in plan.unsafe


def test_forced_start_method_missing_here_is_a_value_error() -> None:
    """Forcing fork on Windows raises ValueError naming the method and the platform."""
    with pytest.raises(ValueError, match=r"'fork' is not available on this platform \(windows\)"):
        _plan(WINDOWS, Options(strategy="fork"))


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_forced_fresh_interpreter_that_cannot_receive_the_function_raises(method: str) -> None:
    """A lambda holding a lock cannot reach spawn or forkserver workers: SerializationError naming the cell."""
    with pytest.raises(SerializationError, match="it is a lambda") as info:
        _plan(opts=Options(strategy=method), shipping=LAMBDA)
    assert "closure cell 'lock'" in str(info.value)
    assert "create that object inside the function" in str(info.value)
    assert isinstance(_plan(opts=Options(strategy=method), shipping=LAMBDA_BY_VALUE), Run)
    assert isinstance(_plan(opts=Options(strategy="fork"), shipping=LAMBDA), Run)


def test_forced_dask_takes_every_cluster_thread() -> None:
    """A forced Dask run with no worker count uses every thread of the cluster."""
    plan = _plan(opts=Options(strategy="dask"), cluster_threads=12, n_items=1000)
    assert isinstance(plan, Run)
    assert plan.decision.workers == 12


def test_item_timeout_under_auto_picks_the_first_usable_start_method() -> None:
    """item_timeout needs a stoppable worker: the cheapest usable process start method, without calibration."""
    opts = Options(item_timeout=1.0)
    assert _plan(LINUX, opts).decision.strategy == "fork"  # type: ignore[attr-defined]
    assert _plan(LINUX_314, opts).decision.strategy == "forkserver"  # type: ignore[attr-defined]
    assert _plan(LINUX, opts, shipping=LAMBDA).decision.strategy == "fork"  # type: ignore[attr-defined]
    assert _plan(LINUX_314, opts, shipping=LAMBDA_BY_VALUE).decision.strategy == "forkserver"  # type: ignore[attr-defined]
    plan = _plan(LINUX_314, opts)
    assert isinstance(plan, Run)
    assert not plan.decision.forced
    assert "item_timeout needs workers that can be stopped" in plan.decision.reasons[0]


def test_item_timeout_with_nothing_that_can_stop_an_item_is_a_value_error() -> None:
    """item_timeout with a forced thread pool, or with no usable process here, raises ValueError naming it."""
    with pytest.raises(ValueError, match=r"item_timeout=1.0 needs a process strategy .* 'threads'"):
        _plan(opts=Options(strategy="threads", item_timeout=1.0), uses_processes=False)
    with pytest.raises(ValueError, match="none can run this function here"):
        _plan(LINUX_314, Options(item_timeout=1.0), shipping=LAMBDA)


@pytest.mark.parametrize(
    ("facts", "opts", "n_items", "shipping", "expected"),
    [
        (LINUX, AUTO, 100, SHIPS, Speculate("fork", 2, 1)),
        (LINUX, AUTO, None, SHIPS, Speculate("fork", 2, 1)),
        (attrs.evolve(LINUX, cpu_count=8), AUTO, 100, SHIPS, Speculate("fork", 8, 7)),
        (attrs.evolve(LINUX, cpu_count=8), AUTO, 3, SHIPS, Speculate("fork", 8, 2)),
        (attrs.evolve(LINUX, cpu_count=8), Options(workers=3), 100, SHIPS, Speculate("fork", 3, 2)),
        (LINUX, AUTO, 100, LAMBDA, Speculate("fork", 2, 1)),
        (LINUX, AUTO, 1, SHIPS, None),
        (LINUX, AUTO, 1000, SHIPS, Speculate("fork", 2, 1)),
        (LINUX, AUTO, 1001, SHIPS, None),  # its first items are too small a share to pay for the forks
        (LINUX_314, AUTO, 200_000, SHIPS, Speculate("forkserver", 2, 2, in_background=True, after_s=0.02)),
        (LINUX, Options(workers=1), 100, SHIPS, None),
        (attrs.evolve(LINUX, cpu_count=1), AUTO, 100, SHIPS, None),
        (LINUX, Options(initializer=print), 100, SHIPS, None),
        (LINUX, Options(shared=b"x", has_shared=True), 100, SHIPS, None),
        (LINUX, Options(max_tasks_per_worker=5), 100, SHIPS, None),
        (LINUX_THREADS, AUTO, 100, SHIPS, Speculate("forkserver", 2, 2, in_background=True, after_s=0.02)),
        (LINUX_314, AUTO, 100, SHIPS, Speculate("forkserver", 2, 2, in_background=True, after_s=0.02)),
        (LINUX_314, AUTO, 100, LAMBDA_BY_VALUE, Speculate("forkserver", 2, 2, in_background=True, after_s=0.02)),
        (
            attrs.evolve(WINDOWS, cpu_count=4),
            AUTO,
            100,
            SHIPS,
            Speculate("spawn", 4, 4, in_background=True, after_s=0.02),
        ),
        (MACOS, AUTO, 100, MAIN_FUNCTION, Speculate("forkserver", 8, 8, in_background=True, after_s=0.02)),
        # Only fork could run a function that cannot be sent, and fork is unsafe with threads running.
        (LINUX_THREADS, AUTO, 100, LAMBDA, None),
        (LINUX_314, AUTO, 1, SHIPS, None),
    ],
)
def test_first_items_go_to_the_preferred_start_method_fork_at_once_others_in_the_background(
    facts: PlatformFacts, opts: Options, n_items: int | None, shipping: Shipping, expected: Speculate | None
) -> None:
    """A first call hands first items to workers: fork's, started in the caller, one per CPU but the caller's;
    the others, booting in the background while the caller computes, one per CPU."""
    assert speculation_plan(facts, opts, n_items, shipping) == expected


@pytest.mark.parametrize(
    ("facts", "imports", "speculates"),
    [
        (LINUX, frozenset({"numpy"}), False),
        (LINUX, frozenset({"json5", "scipy"}), False),
        (LINUX_314, frozenset({"torch"}), False),
        (LINUX, frozenset({"json5"}), True),  # no native thread pool: the early worker's import runs beside
        (LINUX, frozenset(), True),
    ],
)
def test_a_function_that_imports_a_numeric_library_on_first_use_gets_no_early_workers(
    facts: PlatformFacts, imports: frozenset[str], speculates: bool
) -> None:
    """Its first item starts native thread pools on every CPU in the caller: a worker beside it slows both."""
    assert (speculation_plan(facts, AUTO, 100, SHIPS, imports) is not None) is speculates
    plan = _plan(facts, imports=imports)
    assert isinstance(plan, Calibrate)
    assert (plan.speculate is not None) is speculates


# -- shared rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "shippable", "picklable", "expected"),
    [
        (LINUX, True, True, ("fork", "forkserver", "spawn")),
        (LINUX, False, True, ("fork",)),
        (LINUX, True, False, ()),
        (LINUX_THREADS, True, True, ("forkserver", "spawn")),
        (LINUX_THREADS, False, True, ()),
        (LINUX_314, True, True, ("forkserver", "spawn")),
        (WINDOWS, True, True, ("spawn",)),
        (WINDOWS, False, True, ()),
    ],
)
def test_usable_process_methods_filter_by_safety_and_shipping(
    facts: PlatformFacts, shippable: bool, picklable: bool, expected: tuple[str, ...]
) -> None:
    """One filter: safe methods auto may use, fork alone for a function that cannot be sent, none for unpicklable data."""
    assert usable_process_methods(facts, shippable=shippable, picklable=picklable) == expected


def _f(x: int) -> int:
    return x


def test_function_identity_sees_through_methods_partials_and_wrappers() -> None:
    """Bound methods, partials and functools.wraps decorators share the identity of the function under them."""

    class Box:
        def run(self, x: int) -> int:
            return x

    @functools.wraps(_f)
    def wrapper(x: int) -> int:
        return _f(x)

    code = _f.__code__
    assert function_identity(_f) is code
    assert function_identity(functools.partial(_f)) is code
    assert function_identity(wrapper) is code
    assert unwrap_function(functools.partial(Box().run, 1)) is Box.run
    assert function_identity(len) == ("builtins", "len")


@given(size=st.integers(1, 10_000), left=st.integers(1, 100_000), workers=st.integers(1, 64))
def test_guided_size_never_exceeds_the_size_or_the_share_of_what_is_left(size: int, left: int, workers: int) -> None:
    """Tail chunks are at least one item, at most the chosen size, at most a share of what is left."""
    got = guided_size(size, left, workers)
    assert 1 <= got <= size
    assert got <= max(1, -(-left // (2 * workers)))


# -- calibration's rules ------------------------------------------------------------------


def _sample(
    count: int, item_s: float, *, cpu: float = 1.0, waits: int | None = 0, process: float = 1.0
) -> SerialSample:
    wall = count * item_s
    return SerialSample(count=count, wall_s=wall, cpu_s=wall * cpu, process_s=wall * process, waits=waits)


@pytest.mark.parametrize(
    ("item_s", "plan", "gil", "expected"),
    [
        (10e-6, ProbePlan(2, 1500), True, int(PROFILE_S / 10e-6)),  # a 30 ms probe: 2 ms of items profiled first
        (10e-6, ProbePlan(2, 1500), False, 0),  # no GIL: Python bytecode may run in parallel, the probe decides
        (10e-6, ProbePlan(2, 200), True, 80),  # a 4 ms probe: a fifth of it profiled
        (1e-3, ProbePlan(2, 15), True, 2),  # 2 items of 1 ms against a 30 ms probe
        (3e-3, ProbePlan(2, 8), True, 1),  # one item, far shorter than the 48 ms probe
        (9e-3, ProbePlan(2, 2), True, 0),  # one item would take a quarter of the probe's time
    ],
)
def test_items_are_profiled_before_a_probe_only_under_a_gil_and_when_far_cheaper(
    item_s: float, plan: ProbePlan, gil: bool, expected: int
) -> None:
    assert profile_items(_sample(100, item_s), plan, attrs.evolve(LINUX, gil_enabled=gil)) == expected


@pytest.mark.parametrize(
    ("version", "gil", "cpus", "allowed", "profiles"),
    [
        ((3, 12), True, 2, True, True),
        ((3, 15), True, 8, True, True),
        ((3, 11), True, 2, True, True),  # traced, on its first batch (_bytecode.TracedShare)
        ((3, 13), False, 2, True, False),  # no GIL: the probe decides
        ((3, 13), True, 1, True, False),  # one CPU: no probe
        ((3, 13), True, 2, False, False),  # no probe allowed (an initializer)
    ],
)
def test_the_serial_sample_is_profiled_where_a_probe_may_follow(
    version: tuple[int, int], gil: bool, cpus: int, allowed: bool, profiles: bool
) -> None:
    facts = attrs.evolve(LINUX, python_version=version, gil_enabled=gil, cpu_count=cpus)
    assert profiles_sample(facts, allowed=allowed) is profiles


@pytest.mark.parametrize(
    ("share", "probes"),
    [(0.0, False), (MIN_C_SHARE_TO_PROBE / 2, False), (MIN_C_SHARE_TO_PROBE, True), (0.9, True), (None, True)],
)
def test_a_probe_runs_unless_the_profile_shows_python_bytecode(share: float | None, probes: bool) -> None:
    """Bytecode holds the GIL: items that spend almost no CPU in C functions cannot scale on threads."""
    plan = ProbePlan(2, 10)
    assert probe_after_profile(plan, share) == (plan if probes else None)


def test_sample_stops_at_its_target_or_two_percent_of_a_small_run() -> None:
    """The serial sample ends at about SERIAL_SAMPLE_S of work, sooner on a small run, never before one item."""
    assert not sample_done(SerialSample(), 1000)
    assert not sample_done(_sample(10, 0.001), 100_000)
    assert sample_done(_sample(15, 0.001), 100_000)
    assert sample_done(_sample(1, 0.001), 10)  # 2% of 10 ms is less than one item
    assert sample_done(_sample(MAX_SAMPLE_ITEMS, 1e-9), None)
    assert SERIAL_SAMPLE_S <= 0.05
    assert [next_batch_size(_sample(n, 1e-6), last) for n, last in ((0, 1), (1, 1), (3, 2))] == [1, 2, 4]


def test_the_last_serial_batch_stops_at_the_samples_target_instead_of_doubling_past_it() -> None:
    """511 items of 10 us took 5.1 ms: a run of 40,000 is sampled for 2% of it, 8 ms, so about 290 more, not 512."""
    sample = _sample(511, 10e-6)
    assert sample_batch_size(sample, 256, 40_000) == math.ceil((SERIAL_SAMPLE_SHARE * 0.4 - sample.wall_s) / 10e-6)
    assert sample_batch_size(sample, 256, None) == 512  # no length: the 15 ms target is twice as far
    assert sample_batch_size(_sample(1000, 10e-6), 512, None) == 500  # 10 ms of 15
    assert sample_batch_size(_sample(1, 0.02), 1, None) == 1  # past the target already: one item at a time
    sizes, total = [], _sample(0, 0.0)
    while not sample_done(total, 40_000):
        sizes.append(sample_batch_size(total, sizes[-1] if sizes else 1, 40_000))
        total = _sample(total.count + sizes[-1], 10e-6)
    assert total.wall_s <= SERIAL_SAMPLE_SHARE * 0.4 + 10e-6  # one item past the target at most


def test_only_a_first_batch_that_imported_third_party_modules_is_warm_up() -> None:
    """The first item's import is paid once: left out of the timings, for at most MAX_WARMUP_ITEMS items."""
    assert warmup_batch(SerialSample(), imported=3)
    assert not warmup_batch(SerialSample(), imported=0)
    assert not warmup_batch(_sample(1, 0.01), imported=3)  # timed items already: its time is the work's
    assert not warmup_batch(SerialSample(warmup_items=MAX_WARMUP_ITEMS), imported=3)


def _measured(n_items: int | None = 10_000, **kw: object) -> Measurements:
    return Measurements(n_items=n_items, **kw)  # type: ignore[arg-type]


def test_probe_plan_probes_mixed_work_on_a_big_run() -> None:
    """Work that half waits on a big run is probed on a few threads for about 15-40 ms each."""
    plan = probe_plan(_sample(10, 0.002, cpu=0.5, waits=10), _measured(), LINUX, allowed=True)
    assert plan == ProbePlan(threads=2, per_thread=pytest.approx(20, abs=1))


def test_computing_items_whose_c_code_released_the_gil_are_probed() -> None:
    """A cheap fork pool settles computing work unprobed, unless the watcher saw the GIL come promptly (hashing in C).

    Their probe's threads then run its items in parallel: a rest of ten times the probe's work is not asked for.
    """
    sample = _sample(10, 0.002)
    assert probe_plan(sample, _measured(), LINUX, allowed=True) is None
    assert probe_plan(sample, _measured(), LINUX, allowed=True, gil_released=False) is None
    assert probe_plan(sample, _measured(), LINUX, allowed=True, gil_released=True) == ProbePlan(
        threads=2, per_thread=pytest.approx(20, abs=1)
    )
    short = _sample(1, 0.0085)  # 40 items of 8.5 ms: 0.33 s left, under ten times the probe's 34 ms
    assert probe_plan(short, _measured(40), LINUX, allowed=True) is None
    assert probe_plan(short, _measured(40), LINUX, allowed=True, gil_released=True) == ProbePlan(
        threads=2, per_thread=2
    )
    assert probe_plan(short, _measured(8), LINUX, allowed=True, gil_released=True) is None  # under PROBE_MIN_WORK_S


@pytest.mark.parametrize(
    ("sample", "m", "facts", "allowed", "why"),
    [
        (_sample(10, 0.002, cpu=0.5, waits=10), _measured(), LINUX, False, "not allowed"),
        (_sample(10, 0.002, cpu=0.5, waits=10), _measured(), attrs.evolve(LINUX, cpu_count=1), True, "one CPU"),
        (_sample(10, 0.002, cpu=0.5, waits=10), _measured(40), LINUX, True, "too little work left"),
        (_sample(10, 0.002, cpu=0.05, waits=10), _measured(), LINUX, True, "clearly waits"),
        (_sample(10, 0.002), _measured(), LINUX, True, "a cheap fork pool settles computing work"),
    ],
)
def test_probe_plan_skips_a_probe_that_cannot_change_the_choice(
    sample: SerialSample, m: Measurements, facts: PlatformFacts, allowed: bool, why: str
) -> None:
    """No probe when it is not allowed, cannot run in parallel, costs too much, or its reading would not matter."""
    assert probe_plan(sample, m, facts, allowed=allowed) is None, why


@pytest.mark.parametrize(
    ("n_items", "expected"),
    [
        (41, ProbePlan(threads=MAX_THREADS, per_thread=1, carry=True)),  # 40 items of 30 ms left: 1.2 s of work
        (11, ProbePlan(threads=10, per_thread=1, carry=True)),  # no more threads than items left, however few
        (int(CARRY_MAX_WORK_S / 0.03) + 2, None),  # a longer rest: the usual probe
        (None, None),  # a stream of unknown length never runs through in the probe
    ],
)
def test_a_probe_of_items_that_wait_part_of_their_time_carries_on_through_a_short_rest(
    n_items: int | None, expected: ProbePlan | None
) -> None:
    """Items that sleep 20 ms and compute 10 ms: where carrying is allowed and the rest is short, one per thread
    on up to MAX_THREADS threads, carrying on; else (None) the plan without carrying, a thread per CPU."""
    sample = _sample(1, 0.03, cpu=1 / 3, waits=1)
    usual = probe_plan(sample, _measured(n_items), LINUX, allowed=True)
    assert probe_plan(sample, _measured(n_items), LINUX, allowed=True, carry=True) == (expected or usual)
    assert usual is None or (usual.threads, usual.carry) == (2, False)


def test_a_carrying_probe_runs_no_more_items_at_once_than_half_the_available_memory_holds() -> None:
    """Items that each hold 512 MiB, 4 GiB available: 4 threads, not 32; unknown memory sets no limit."""
    sample = _sample(1, 0.03, cpu=1 / 3, waits=1)
    heavy = attrs.evolve(_measured(41), peak_growth_bytes=512 * 2**20)
    four_gib = attrs.evolve(LINUX, memory_available_bytes=4 * 2**30)
    assert probe_plan(sample, heavy, four_gib, allowed=True, carry=True) == ProbePlan(
        threads=4, per_thread=1, carry=True
    )
    unknown = probe_plan(sample, heavy, LINUX, allowed=True, carry=True)
    assert unknown == ProbePlan(threads=MAX_THREADS, per_thread=1, carry=True)


def test_items_too_short_to_take_one_at_a_time_get_the_usual_probe() -> None:
    sample = _sample(100, CARRY_MIN_ITEM_S / 2, cpu=1 / 3, waits=100)
    plan = probe_plan(sample, _measured(1000), LINUX, allowed=True, carry=True)
    assert plan == probe_plan(sample, _measured(1000), LINUX, allowed=True)


@pytest.mark.parametrize(
    ("sample", "why"),
    [
        (_sample(1, 0.03), "computes: a fork pool settles it, no probe"),
        (_sample(1, 0.03, cpu=0.05, waits=1), "clearly waits: threads, no probe"),
    ],
)
def test_only_items_that_wait_part_of_their_time_get_a_carrying_probe(sample: SerialSample, why: str) -> None:
    plan = probe_plan(sample, _measured(41), LINUX, allowed=True, carry=True)
    assert plan is None or not plan.carry, why


def test_native_threads_get_no_carrying_probe() -> None:
    """Items whose native threads use several cores (BLAS) neither wait nor compute in their thread: no carrying."""
    sample = _sample(1, 0.03, cpu=1 / 3, waits=1, process=1.8)
    plan = probe_plan(sample, _measured(41), LINUX, allowed=True, carry=True)
    assert plan is None or not plan.carry


def test_probe_plan_probes_computing_work_where_no_process_pool_is_usable() -> None:
    """Computing work is probed when no process can take it (unpicklable data): threads are the only way."""
    plan = probe_plan(_sample(10, 0.002), _measured(data_picklable=False), LINUX, allowed=True)
    assert plan is not None


def test_sample_classification_and_probe_speedup() -> None:
    """A sample that never blocks computes; one at a tenth CPU clearly waits; native threads are neither."""
    assert is_computing(_sample(10, 0.001))
    assert not is_computing(_sample(10, 0.001, cpu=0.5, waits=10))
    assert is_clearly_waiting(_sample(10, 0.001, cpu=0.05, waits=10))
    assert not is_clearly_waiting(_sample(10, 0.001, cpu=0.05, waits=10, process=2.0))
    assert is_computing(_sample(10, 0.001, waits=None))
    sample = _sample(10, 0.001)
    assert probe_speedup(sample, 0.0, 4, 0.004) is None
    assert probe_speedup(sample, 0.004, 4, 0.004) == pytest.approx(1.0)
    assert probe_speedup(sample, 0.004, 4, 0.008) == pytest.approx(2.0)  # summed thread CPU over wall


@pytest.mark.parametrize(
    "facts", [LINUX, LINUX_314, MACOS, WINDOWS], ids=["linux-3.13", "linux-3.14", "macos", "windows"]
)
@pytest.mark.parametrize("shipping", [LAMBDA_BY_VALUE, MAIN_FUNCTION], ids=["lambda", "main-function"])
@pytest.mark.parametrize("main_importable", [True, False], ids=["script", "python-c"])
def test_forced_spawn_runs_a_function_sent_by_value_without_warning(
    facts: PlatformFacts, shipping: Shipping, main_importable: bool
) -> None:
    """A lambda or a function of a script or of ``python -c`` runs under forced spawn on every platform, unwarned."""
    facts = attrs.evolve(facts, main_importable=main_importable)
    plan = _plan(facts, Options(strategy="spawn"), shipping=shipping)
    assert isinstance(plan, Run)
    assert plan.unsafe is None
    assert plan.log_warning is None
    assert plan.decision.strategy == "spawn"


@pytest.mark.parametrize("facts", [LINUX_314, MACOS, WINDOWS], ids=["linux-3.14", "macos", "windows"])
def test_item_timeout_sends_a_lambda_by_value_to_a_fresh_interpreter(facts: PlatformFacts) -> None:
    """Where fork is left out, item_timeout runs a by-value lambda on the first fresh-interpreter start method."""
    plan = _plan(attrs.evolve(facts, main_importable=False), Options(item_timeout=1.0), shipping=LAMBDA_BY_VALUE)
    assert isinstance(plan, Run)
    assert plan.decision.strategy in {"forkserver", "spawn"}


def _sampled(
    cpu_share: float, n_items: int = 1000, *, waits: float = 1.0, process: float | None = None
) -> Measurements:
    """Measurements after a serial sample of items 40 ms long, busy ``cpu_share`` of it."""
    cpu = 0.04 * cpu_share
    return Measurements(
        n_items=n_items,
        sampled=1,
        item_wall_s=0.04,
        item_cpu_s=cpu,
        item_process_cpu_s=cpu if process is None else process * 0.04,
        item_waits=waits,
    )


@pytest.mark.parametrize(
    ("m", "expected"),
    [
        (_sampled(0.25), 8),  # 25 ms asleep, 8 ms computing: 2 CPUs / 0.25 keep them busy
        (_sampled(0.45), 4),  # computing near half the time: 2 / 0.45, rounded down
        (_sampled(0.12), 16),  # 5 ms of 40 computing: 16 keep the CPUs busy (8 per CPU at most)
        (_sampled(0.05 * 1.01, n_items=100), 0),  # clearly waiting: threads
        (_sampled(0.1), 0),  # a tenth or less clearly waits: threads, and nothing sent
        (_sampled(0.05), 0),
        (_sampled(0.25, n_items=5), 4),  # never more workers than items left
        (_sampled(0.25, n_items=2), 2),  # nor fewer than it has
        (_sampled(0.6), 3),  # blocks 40% of the time: one more worker than CPUs
        (_sampled(0.7), 0),  # 2 / 0.7 rounds down to the CPU count
        (_sampled(1.0), 0),  # computing: a probe's threads would need the CPUs
        (_sampled(0.6, waits=0.0), 0),  # never blocked: the CPU it lacked went to other processes
        (_sampled(0.25, process=1.8), 0),  # native threads already use both CPUs
    ],
)
def test_the_early_pool_grows_for_items_that_block_and_run_bytecode_to_the_workers_that_keep_the_cpus_busy(
    m: Measurements, expected: int
) -> None:
    assert workers_fed(Speculate("fork", 2, 1), m, LINUX, c_share=0.0) == expected


@pytest.mark.parametrize(
    ("c_share", "grows"),
    [
        (0.0, True),  # Python bytecode: threads cannot run it in parallel
        (MIN_C_SHARE_TO_PROBE / 2, True),
        (MIN_C_SHARE_TO_PROBE, False),  # C code, which may release the GIL: the probe decides, undisturbed
        (0.9, False),  # hashing after a wait
        (None, False),  # not profiled (before Python 3.12): no evidence, no bet
    ],
)
def test_the_early_pool_grows_only_where_the_profile_shows_python_bytecode(c_share: float | None, grows: bool) -> None:
    fed = workers_fed(Speculate("fork", 2, 1), _sampled(0.25), LINUX, c_share)
    assert fed == (8 if grows else 0)


def test_an_early_pool_grown_for_waiting_items_is_priced_by_the_cost_model() -> None:
    """The count the pool grows to is a candidate the decision prices: a decision of it takes the pool over."""
    m = _sampled(0.25)
    fed = workers_fed(Speculate("fork", 2, 1), m, LINUX, c_share=0.0)
    assert fed in worker_options("fork", workload(m, LINUX), Options())
