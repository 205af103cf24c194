"""Frozen records that flow between layers: platform facts, options, measurements, decisions.

Every field that carries a quantity names its unit (``_s`` seconds, ``_bytes``).  The records are
plain data: the decision logic (``_decide``) and the start-method rules (``_safety``) are pure
functions of them, so they can be tested with synthetic values and no clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from ._render import jsonable, render_decision

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "Candidate",
    "ClusterFacts",
    "Decision",
    "Measurements",
    "MethodVerdict",
    "Options",
    "PlatformFacts",
    "PoolSpec",
    "SerialSample",
    "Shipping",
]


@attrs.frozen(kw_only=True)
class PlatformFacts:
    """What autopar knows about the machine and the interpreter, probed once per call site.

    ``system`` is ``"linux"``, ``"darwin"``, ``"windows"`` or another ``sys.platform``-like name.
    """

    system: str
    python_version: tuple[int, int]
    gil_enabled: bool = True
    start_methods: tuple[str, ...] = ()
    default_start_method: str = "spawn"
    python_threads: int = 1
    native_threads: int = 1
    cpu_count: int = 1
    cpu_logical: int = 1
    cpu_physical: int | None = None
    memory_total_bytes: int = 0
    memory_available_bytes: int = 0
    #: ``__main__`` is a file on disk (False in a REPL, ``python -c``, notebooks).
    main_importable: bool = True
    #: This process is itself an autopar worker (nested call).
    in_worker: bool = False
    #: This process is a spawn/forkserver child of another library's pool, still importing ``__main__``.
    in_main_bootstrap: bool = False
    cloudpickle_available: bool = False
    #: This process is daemonic (a ``multiprocessing`` worker, ``Process(daemon=True)``): it may not have children.
    daemon: bool = False
    #: Why no process pool can start here (Linux: ``/dev/shm`` missing or read-only), or None.
    shm_problem: str | None = None
    #: Start methods whose workers could not start during this call (a limit), each with the reason.
    start_failures: tuple[tuple[str, str], ...] = ()
    #: ``concurrent.interpreters`` exists (Python 3.14 and later, a build with subinterpreters).
    subinterpreters: bool = False


@attrs.frozen(kw_only=True)
class MethodVerdict:
    """Whether a process start method exists here and whether it is safe now, with the reason."""

    method: str
    available: bool
    safe: bool
    reason: str


@attrs.frozen(kw_only=True)
class Options:
    """A call's options after precedence (environment, call, decorator, ``config()``) is resolved."""

    strategy: str = "auto"
    #: Where ``strategy`` came from: "env", "call", "decorator", "config" or "default".
    strategy_source: str = "default"
    workers: int | None = None
    chunksize: int | None = None
    timeout: float | None = None
    max_tasks_per_worker: int | None = None
    initializer: Callable[..., Any] | None = None
    initargs: tuple[Any, ...] = ()
    errors: str = "raise"
    progress: Any = None
    item_timeout: float | None = None
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = ()
    #: The object passed as second argument to every call (``has_shared`` says whether one was given).
    shared: Any = attrs.field(default=None, eq=False)
    has_shared: bool = False
    #: A ``distributed.Client`` or address (``dask=``, ``AUTOPAR_DASK_SCHEDULER``); None: a default client serves.
    dask: Any = None
    #: Record the call for ``last_report()`` (``report=True``).
    report: bool = False

    @property
    def forced(self) -> bool:
        """The strategy was chosen by the user, not by autopar."""
        return self.strategy != "auto"


@attrs.frozen(kw_only=True)
class PoolSpec:
    """How to build a pool's workers; pools are reused only for an equal spec."""

    initializer: Callable[..., Any] | None = None
    initargs: tuple[Any, ...] = attrs.field(default=(), eq=False)
    #: What pools compare instead of ``initargs``: the arguments when hashable, else a unique object.
    initargs_key: Any = ()
    max_tasks_per_worker: int | None = None
    #: Native thread pools (BLAS, OpenMP) per process worker; None leaves them alone.
    native_threads: int | None = None
    #: A function fork workers inherit instead of receiving it pickled (lambdas, closures).
    inherit: Callable[..., Any] | None = attrs.field(default=None, eq=False)
    inherit_token: int | None = None
    #: Workers send each item's result at once, so a crash or an item timeout loses nothing done.
    stream: bool = False
    #: Seconds one item may run before its process worker is killed (stream mode only).
    item_timeout: float | None = None
    #: Key of the object passed to every call with ``shared=``, and what a spawned worker receives
    #: (the object, or a reference to the shared-memory segment holding it).
    shared_key: int | None = None
    shared_payload: Any = attrs.field(default=None, eq=False)
    #: The Dask cluster of a ``dask`` pool: a ``distributed.Client`` or a scheduler address.
    cluster: Any = attrs.field(default=None, eq=False)
    #: Names the cluster (and the client) for pool reuse: a pool serves only the cluster it was built for.
    cluster_key: str | None = None


@attrs.frozen(kw_only=True)
class ClusterFacts:
    """What a probe of a Dask cluster measured: its size and what a task costs to send there."""

    #: The scheduler's address, for messages.
    address: str = ""
    #: Seconds from submitting one trivial task to holding its result (latency).
    round_trip_s: float
    #: Seconds the caller and the scheduler spend per task, one task after another (a throughput limit).
    task_overhead_s: float
    #: Worker threads over the whole cluster: tasks that can run at once.
    total_threads: int
    workers: int
    threads_per_worker: int
    #: Each worker is a process: GIL-bound work runs in parallel across workers (not across one's threads).
    processes: bool
    transfer_s_per_byte: float  # to move an argument or a result between the caller and a worker


@attrs.frozen(kw_only=True)
class Measurements:
    """What calibration measured on real items (per-item figures are means over the sample)."""

    #: Total number of items, when the input has a length (or was fully read).
    n_items: int | None
    #: Items timed one by one in the caller.
    sampled: int = 0
    item_wall_s: float = 0.0
    #: CPU time of the running thread (``time.thread_time``): low against wall means waiting.
    item_cpu_s: float = 0.0
    #: CPU time of the whole process: well above wall means native threads already use several cores.
    item_process_cpu_s: float = 0.0
    item_wall_max_s: float = 0.0
    #: Voluntary context switches per item (blocking waits; None: unknown): low CPU without them is not waiting.
    item_waits: float | None = None
    #: Seconds per item the running thread queued for a CPU behind other processes, None if unknown.
    item_queued_s: float | None = None
    #: Bytes the process's peak memory grew by while the caller ran its sample (0: unknown): what an item needs at once.
    peak_growth_bytes: int = 0
    func_pickle_bytes: int = 0
    item_pickle_bytes: float = 0.0
    result_pickle_bytes: float = 0.0
    #: Seconds per item to pickle and unpickle the item and its result.
    pickle_s: float = 0.0
    #: Threads used by the scaling probe (0: not probed).
    thread_probe_workers: int = 0
    #: Speedup of the probe over serial: about 1 when the GIL serializes the function.
    thread_speedup: float | None = None
    #: The function, items and results can be pickled by reference (spawn and forkserver can ship them).
    shippable: bool = True
    ship_reason: str = ""
    #: Items and results can be pickled at all (a fork pool can inherit an unpicklable function).
    data_picklable: bool = True
    #: Why auto does not use subinterpreters (by default: its modules are unchecked), or None when it may.
    interpreters_problem: str | None = "its modules were not checked for subinterpreters"
    #: Seconds to start one worker of each process start method (measured or default).
    worker_startup_s: Mapping[str, float] = attrs.field(factory=dict)
    initializer_s: float = 0.0  # per-worker set-up cost (initializer)
    #: Size of the object passed with ``shared=``: sent once to each spawn/forkserver worker.
    shared_bytes: int = 0
    warm_pools: frozenset[tuple[str, int]] = frozenset()  # (strategy, workers) of pools already running
    calibration_s: float = 0.0
    #: Items that ran in process workers started at once, while the caller measured (not counted in ``sampled``),
    #: the seconds each one still out at the decision has been out, and that pool, by start method and workers:
    #: a decision of more workers of its method grows it.
    speculative_items: int = 0
    speculative_out_s: tuple[float, ...] = ()
    early_pool: tuple[str, int] | None = None
    #: First items of ``sampled`` that imported third-party modules (untimed), and the seconds they took over
    #: the others': a worker that did not fork from the caller after them pays those again (``_costs``).
    warmup_items: int = 0
    warmup_s: float = 0.0
    #: The Dask cluster auto-selection may send work to (None: no cluster configured).
    cluster: ClusterFacts | None = None


@attrs.frozen(kw_only=True)
class Shipping:
    """Whether process workers can receive a call's function: worked out once per call."""

    #: The function's qualified name, for messages.
    name: str = ""
    #: Why spawn and forkserver workers cannot receive it by reference (a lambda, a closure, a
    #: function of ``__main__``), or None when they can.
    problem: str | None = None
    #: Why even a fork worker cannot receive it pickled (a lambda, a closure), so fork workers
    #: inherit it instead; None when it pickles by reference in a forked copy of this process.
    fork_problem: str | None = None
    #: cloudpickle can send it by value instead (False: it holds a lock, a socket, ...).
    by_value: bool = False
    #: Why auto-selection does not run it in subinterpreters (``_core._safety.interpreters_auto_problem``),
    #: or None when it may.
    interpreters_problem: str | None = "its modules were not checked for subinterpreters"

    @property
    def shippable(self) -> bool:
        """spawn and forkserver workers can receive it, by reference or by value."""
        return self.problem is None or self.by_value


@attrs.frozen(kw_only=True)
class SerialSample:
    """Totals of the items calibration timed one after another in the caller."""

    count: int = 0
    wall_s: float = 0.0
    #: CPU time of the running thread (``time.thread_time``).
    cpu_s: float = 0.0
    #: CPU time of the whole process (``time.process_time``): native threads count here.
    process_s: float = 0.0
    #: Wall time per item of the slowest batch; the first item's alone only until later batches: it ran cold.
    max_item_s: float = 0.0
    #: Voluntary context switches of the running thread (blocking waits), None where unknown.
    waits: int | None = 0
    #: Seconds the thread queued behind other processes for a CPU (Linux schedstat; None: unknown): not waiting.
    queued_s: float | None = None
    #: Items run first that imported third-party modules, and their wall time: not in the totals above.
    warmup_items: int = 0
    warmup_s: float = 0.0

    @property
    def per_item_s(self) -> float:
        """Mean wall seconds per item (0 before any item)."""
        return self.wall_s / self.count if self.count else 0.0


@attrs.frozen(kw_only=True)
class Candidate:
    """One strategy the cost model considered, with its predicted wall time."""

    strategy: str
    workers: int
    chunksize: int
    predicted_s: float
    note: str = ""


@attrs.frozen(kw_only=True)
class Decision:
    """The strategy, worker count and chunk size chosen for a call, and why (``str()``: a table of every candidate)."""

    strategy: str
    workers: int
    chunksize: int
    predicted_s: float | None = None
    candidates: tuple[Candidate, ...] = ()
    reasons: tuple[str, ...] = ()
    measurements: Measurements | None = None
    forced: bool = False
    #: Process workers run with native thread pools (BLAS, OpenMP) limited to one thread.
    limit_native_threads: bool = True

    def __str__(self) -> str:
        return render_decision(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of the decision."""
        return attrs.asdict(self, recurse=True, value_serializer=jsonable)


# Public classes report the public path: in reprs and tracebacks, and when pickled by reference.
PlatformFacts.__module__ = Measurements.__module__ = Candidate.__module__ = Decision.__module__ = "autopar"
