"""The scripts in examples/ run as real programs and print what they promise."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
#: A deadlock guard, not a measurement: each example runs in a few seconds.
TIMEOUT_S = 120


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPAR_")}
    env.update(extra)
    return env


def _run(*args: str, **env: str) -> str:
    proc = subprocess.run(
        [sys.executable, *args],
        timeout=TIMEOUT_S,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(**env),
        check=False,
    )
    assert proc.returncode == 0, f"exit status {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def _example(name: str) -> str:
    return _run(str(EXAMPLES / name))


def test_plain_map_prints_longest_collatz_chain():
    """plain_map.py finds the longest Collatz chain below 100,001."""
    out = _example("plain_map.py")
    assert "100000 numbers; the longest chain starts at 77031 and takes 350 steps" in out


def test_decorator_calls_and_maps():
    """decorator.py calls the decorated function once, maps it, and returns a failing item's exception."""
    out = _example("decorator.py")
    assert "count_primes(100) = 25" in out
    assert "primes below 32000: 3432" in out
    assert "inverse of [4, 2, 0, 1]: [0.25, 0.5, ZeroDivisionError('division by zero'), 1.0]" in out


def test_hashing_prints_digests():
    """hashing.py hashes 128 blocks and prints the digest of block 0 and of them all."""
    out = _example("hashing.py")
    digests = [hashlib.sha256(n.to_bytes(8, "little") * (1 << 17)).hexdigest() for n in range(128)]
    assert "128 blocks of 1048576 bytes hashed" in out
    assert f"block 0: {digests[0]}" in out
    assert f"all blocks combined: {hashlib.sha256(''.join(digests).encode()).hexdigest()}" in out


def test_imap_stream_receives_every_answer():
    """imap_stream.py gets one answer per request from a generator, in any order."""
    out = _example("imap_stream.py")
    assert f"600 distinct answers received; sum of answers: {sum(i * i for i in range(600))}" in out


def test_progress_reports_up_to_the_total():
    """progress.py reports progress through its callback and ends at 20000/20000."""
    out = _example("progress.py")
    lines = out.splitlines()
    reports = [line for line in lines if line.endswith("items done")]
    assert reports, out
    assert reports[-1] == "20000/20000 items done"
    counts = [int(line.split("/")[0]) for line in reports]
    assert counts == sorted(counts)
    assert lines[-1] == f"largest digit sum: {max(sum(int(d) for d in str(n**50)) for n in range(20_000))}"


def test_config_scope_shows_precedence():
    """config_scope.py shows config() forcing a strategy, the call winning over it and AUTOPAR_STRATEGY over both."""
    out = _example("config_scope.py")
    assert "threads  (strategy 'threads' forced by autopar.config())" in out
    assert "serial   (strategy 'serial' forced by the call)" in out
    assert "serial   (strategy 'serial' forced by the AUTOPAR_STRATEGY environment variable)" in out
    assert f"map under config, sum of squares:  {sum(x * x for x in range(1000))}" in out
    assert out.count("chosen by measuring square") == 2


def test_cli_explain_hashing_json():
    """`python -m autopar explain hashing:digest "range(16)" --json` prints a JSON decision with a strategy."""
    out = _run("-m", "autopar", "explain", "hashing:digest", "range(16)", "--json", PYTHONPATH=str(EXAMPLES))
    decision = json.loads(out)
    assert "strategy" in decision
    assert decision["strategy"] in ("serial", "threads", "fork", "forkserver", "spawn")


@pytest.mark.skipif(sys.platform == "win32", reason="no resource limits on Windows")
def test_cli_info_names_the_limits_a_pool_start_meets():
    """`python -m autopar info` lists RLIMIT_NPROC and RLIMIT_NOFILE with their values and what is in use."""
    import resource

    out = _run("-m", "autopar", "info")
    rows = dict(line.split(None, 1) for line in out.splitlines() if line.startswith("  RLIMIT_"))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    value = "unlimited" if soft == resource.RLIM_INFINITY else str(soft)
    assert rows["RLIMIT_NOFILE"].startswith(f"{value} (open in this process: ")
    assert "(processes and threads of this user: " in rows["RLIMIT_NPROC"]


def test_model_per_worker_loads_the_model_once_per_worker():
    """model_per_worker.py scores 2000 reviews with a model each spawn worker loaded exactly once."""
    out = _example("model_per_worker.py")
    assert "2000 reviews scored; total score 12; positive: 1001" in out
    assert "spawn: same scores; 2 worker processes, each loaded the model once: True" in out


def test_connection_per_worker_queries_on_threads_and_processes():
    """connection_per_worker.py gets the same totals with a connection per thread and per spawn worker."""
    out = _example("connection_per_worker.py")
    for strategy in ("threads", "spawn"):
        assert f"{strategy}: 10000 orders of 250 customers; the largest total is customer 71 with 204960 cents" in out


def test_shared_table_reaches_every_item_read_only():
    """shared_table.py answers the same queries under auto and spawn; spawn workers see a read-only memoryview."""
    out = _example("shared_table.py")
    entries = [i * i % 1_000_003 for i in range(2_000_000)]
    total = sum(entries[(q * 7_919 + k * 104_729) % 2_000_000] for q in range(5_000) for k in range(16))
    assert f"auto: sum of answers {total}" in out
    assert f"spawn: sum of answers {total}; items saw (type, read-only): [('memoryview', True)]" in out


def test_survive_bad_items_returns_failures_by_index():
    """survive_bad_items.py finishes 97 of 100 items and reports the two ValueErrors and the crash by index."""
    out = _example("survive_bad_items.py")
    assert out.splitlines() == [
        "100 items: 97 succeeded, 3 failed",
        "item 7: ValueError: item 7 is malformed",
        "item 13: WorkerCrashedError: a spawn worker died while running item 13, with exit code 3",
        "item 21: ValueError: item 21 is malformed",
        "item 42 after its retry: 1764",
    ]


@pytest.mark.timeout(180)
def test_sklearn_backend_runs_scikit_learn_on_autopar():
    """sklearn_backend.py runs cross-validation, a grid search and a forest on the "autopar" joblib backend."""
    pytest.importorskip("sklearn")
    out = _example("sklearn_backend.py")
    assert "cross_val_score: mean accuracy 0.847" in out
    assert "GridSearchCV: best C" in out
    assert "forest: 400 rows of probabilities, on " in out
    assert "autopar decision:" in out
