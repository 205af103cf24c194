"""The cost model's Dask cluster term, driven by synthetic cluster facts against a two-core laptop."""

from __future__ import annotations

import attrs
import pytest

from autopar._core._costs import DASK_FIRST_USE_S, predict
from autopar._core._decide import decide
from autopar._model import ClusterFacts, Decision, Measurements, Options
from platforms import LINUX

#: A two-core laptop where fork is safe.
LAPTOP = LINUX
#: 256 cores: 256 single-threaded worker processes, 5 ms away, 1 ms of scheduler time per task, 100 MB/s.
BIG_CLUSTER = ClusterFacts(
    address="tcp://10.0.0.1:8786",
    round_trip_s=0.005,
    task_overhead_s=0.001,
    total_threads=256,
    workers=256,
    threads_per_worker=1,
    processes=True,
    transfer_s_per_byte=1e-8,
)
#: The same 256 threads, as 32 processes of 8 threads each.
FAT_WORKERS = attrs.evolve(BIG_CLUSTER, workers=32, threads_per_worker=8)
#: The same threads, all in one process (an in-process cluster): one GIL for all of them.
ONE_PROCESS = attrs.evolve(BIG_CLUSTER, workers=1, threads_per_worker=256, processes=False)

AUTO = Options()


def measure(
    n_items: int, item_s: float, *, speedup: float = 1.0, item_bytes: float = 60, pickle_s: float = 5e-6
) -> Measurements:
    """Pure Python items of ``item_s`` each (two probe threads ran ``speedup`` times as fast as one)."""
    return Measurements(
        n_items=n_items,
        sampled=0,
        item_wall_s=item_s,
        item_cpu_s=item_s,
        item_process_cpu_s=item_s,
        item_wall_max_s=item_s,
        item_pickle_bytes=item_bytes,
        result_pickle_bytes=60,
        func_pickle_bytes=80,
        pickle_s=pickle_s,
        thread_probe_workers=2,
        thread_speedup=speedup,
    )


#: A minute of pure-Python work: 6000 items of 10 ms.
MINUTE = measure(6000, 0.010)
#: 50 ms of work: 50 items of 1 ms.
FIFTY_MS = measure(50, 0.001)
#: 10 MB arguments, cheap compute: 200 items of 5 ms (pickling 10 MB costs about 10 ms per item).
LARGE_ARGUMENTS = measure(200, 0.005, item_bytes=10e6, pickle_s=0.01)


def with_cluster(m: Measurements, cluster: ClusterFacts = BIG_CLUSTER) -> Measurements:
    """``m`` with the facts of ``cluster``."""
    return attrs.evolve(m, cluster=cluster)


def candidate(decision: Decision, strategy: str) -> float:
    """The predicted seconds of ``strategy`` in ``decision``."""
    return next(c.predicted_s for c in decision.candidates if c.strategy == strategy)


def local_best(decision: Decision) -> float:
    """The fastest prediction among the strategies of this machine."""
    return min(c.predicted_s for c in decision.candidates if c.strategy != "dask")


@pytest.mark.parametrize("cluster", [BIG_CLUSTER, FAT_WORKERS], ids=["process-per-core", "8-thread-workers"])
def test_cluster_takes_a_minute_of_pure_python_work(cluster: ClusterFacts) -> None:
    """A minute of GIL-bound work goes to a 256-core cluster of processes, predicted many times faster."""
    decision = decide(with_cluster(MINUTE, cluster), LAPTOP, AUTO)
    assert decision.strategy == "dask"
    assert decision.predicted_s is not None
    assert decision.predicted_s * 10 < local_best(decision)
    assert decision.workers == -(-6000 // decision.chunksize) <= 256  # a chunk per cluster thread at most
    assert f"dask with {decision.workers} workers" in str(decision)


def test_small_workload_stays_home_with_a_cluster() -> None:
    """50 ms of work stays on the laptop: the cluster's first use alone costs more."""
    decision = decide(with_cluster(FIFTY_MS), LAPTOP, AUTO)
    assert decision.strategy != "dask"
    assert candidate(decision, "dask") > DASK_FIRST_USE_S
    assert "only when more than 10% faster than every local strategy" in str(decision)


def test_large_arguments_stay_home_with_a_cluster() -> None:
    """10 MB items with cheap compute stay on the laptop: sending them costs more than running them."""
    decision = decide(with_cluster(LARGE_ARGUMENTS), LAPTOP, AUTO)
    assert decision.strategy != "dask"
    assert candidate(decision, "dask") > 10 * local_best(decision)


def test_gil_bound_work_on_one_process_cluster_stays_home() -> None:
    """Threads of one process share its GIL: GIL-bound work gains nothing from 256 of them."""
    decision = decide(with_cluster(MINUTE, ONE_PROCESS), LAPTOP, AUTO)
    assert decision.strategy != "dask"
    assert "threads of one process" in str(decision)


def test_gil_releasing_work_uses_every_thread_of_fat_workers() -> None:
    """Work that releases the GIL runs on every thread of multi-threaded workers, not one per process."""
    gil_bound = predict("dask", 256, 20, with_cluster(MINUTE, FAT_WORKERS), LAPTOP, AUTO)
    releasing = predict(
        "dask", 256, 20, with_cluster(attrs.evolve(MINUTE, thread_speedup=2.0), FAT_WORKERS), LAPTOP, AUTO
    )
    assert releasing * 3 < gil_bound


def test_cluster_loses_a_near_tie_to_the_machine_at_hand() -> None:
    """A cluster predicted faster, but within 10% of the best local strategy, is not chosen: it comes last in simplicity."""
    low, high = 0.0, 60.0  # round trips (seconds) between a clear win and a clear loss for the cluster
    for _ in range(60):
        round_trip = (low + high) / 2
        tied = decide(with_cluster(MINUTE, attrs.evolve(BIG_CLUSTER, round_trip_s=round_trip)), LAPTOP, AUTO)
        ratio = candidate(tied, "dask") / local_best(tied)
        if 0.93 <= ratio <= 0.97:
            break
        low, high = (round_trip, high) if ratio < 0.93 else (low, round_trip)
    assert 0.93 <= ratio <= 0.97
    assert tied.strategy == "fork"


def test_no_cluster_facts_means_no_dask_candidate() -> None:
    """Without cluster facts, auto-selection never lists or picks dask."""
    decision = decide(MINUTE, LAPTOP, AUTO)
    assert "dask" not in {c.strategy for c in decision.candidates}
    assert "Dask cluster" not in str(decision)


@pytest.mark.parametrize(
    ("measurements", "options", "why"),
    [
        (with_cluster(attrs.evolve(MINUTE, data_picklable=False)), AUTO, "cannot be pickled"),
        (with_cluster(MINUTE), Options(shared=object(), has_shared=True), "shared="),
        (with_cluster(MINUTE, attrs.evolve(BIG_CLUSTER, total_threads=0, workers=0)), AUTO, "no workers"),
    ],
    ids=["unpicklable-data", "shared", "no-workers"],
)
def test_cluster_excluded_says_why(measurements: Measurements, options: Options, why: str) -> None:
    """A cluster that cannot take the call is left out of the candidates, with the reason."""
    decision = decide(measurements, LAPTOP, options)
    assert "dask" not in {c.strategy for c in decision.candidates}
    assert f"not a candidate: {why}" in str(decision) or why in str(decision)


def test_explain_lists_the_cluster_beside_local_candidates() -> None:
    """The cluster's prediction is one row of the table, with its facts among the reasons."""
    text = str(decide(with_cluster(MINUTE), LAPTOP, AUTO))
    for name in ("serial", "threads", "fork", "dask"):
        assert f" {name} " in text
    assert "Dask cluster tcp://10.0.0.1:8786: 256 worker(s) x 1 thread(s) (a process each)" in text
    assert "round trip 5.0 ms" in text


def test_forced_dask_with_cluster_facts_gets_a_prediction() -> None:
    """Forcing dask with cluster facts keeps the cost model's workers, chunk size and prediction."""
    decision = decide(with_cluster(FIFTY_MS), LAPTOP, Options(strategy="dask", strategy_source="call"))
    assert decision.strategy == "dask"
    assert decision.forced
    assert decision.predicted_s == candidate(decision, "dask")
    assert "no cost model" not in str(decision)


def test_warm_cluster_pool_skips_the_first_use_cost() -> None:
    """A dask pool already serving this process predicts no first-use cost."""
    cold = decide(with_cluster(MINUTE), LAPTOP, AUTO)
    warm_m = attrs.evolve(with_cluster(MINUTE), warm_pools=frozenset({("dask", cold.workers)}))
    warm = decide(warm_m, LAPTOP, AUTO)
    assert candidate(cold, "dask") - candidate(warm, "dask") == pytest.approx(DASK_FIRST_USE_S)


def test_chunks_keep_every_cluster_thread_fed() -> None:
    """Chunks last at least as long as the scheduler needs to hand a task to every thread, one chunk per thread at most."""
    decision = decide(with_cluster(MINUTE), LAPTOP, AUTO)
    chunk_s = decision.chunksize * 0.010
    assert chunk_s >= BIG_CLUSTER.task_overhead_s * 256 * 0.9
    assert decision.chunksize <= -(-6000 // 256)
