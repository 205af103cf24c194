"""Platform probing in ``autopar._platform``: CPU limits from fake cgroup files, and real probes of this machine."""

from __future__ import annotations

import functools
import os
import sys
import textwrap
import threading
import types
from typing import TYPE_CHECKING

import attrs
import pytest

import helpers
from autopar._info import platform_report
from autopar._main_module import in_main_bootstrap, main_importable
from autopar._model import PlatformFacts
from autopar._platform import (
    count_threads,
    cpu_count,
    cpu_count_physical,
    in_worker,
    is_gil_enabled,
    probe_platform,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

#: Deadlock guard for child interpreters, not a measurement.
SUBPROCESS_TIMEOUT_S = 60

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="probes this Linux machine")


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _real_count(tmp_path: Path) -> int:
    """The count with no cgroup limit: the smaller of ``os.cpu_count()`` and the affinity set."""
    count = os.cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        count = min(count, len(os.sched_getaffinity(0)))
    assert cpu_count(cgroup_root=tmp_path / "missing") == count
    return count


@pytest.fixture(name="many_cpus")
def _many_cpus(monkeypatch: pytest.MonkeyPatch) -> Callable[..., int]:
    """``cpu_count`` on a machine of 64 CPUs, all in the affinity set, so cgroup quotas are the only limit."""
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    return functools.partial(cpu_count, affinity=lambda: set(range(64)))


def _run_python(args: list[str], cwd: Path, stdin: str | None = None) -> str:
    """Run a child interpreter and return its standard output."""
    done = helpers.run_python(args, cwd, stdin=stdin, timeout=SUBPROCESS_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return done.stdout


# --- cpu_count with fake cgroups ----------------------------------------------------------------------------------


def test_cpu_count_real_when_cgroup_root_missing(tmp_path: Path) -> None:
    """Without cgroup files the count is the smaller of ``os.cpu_count()`` and the affinity set."""
    assert _real_count(tmp_path) >= 1


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("max 100000", 64),
        ("max 100000\n", 64),
        ("150000 100000", 2),
        ("50000 100000", 1),
        ("1000 100000", 1),
        ("400000 100000", 4),
        ("250000 50000", 5),
    ],
)
def test_cpu_count_follows_cgroup_v2_cpu_max(
    many_cpus: Callable[..., int], tmp_path: Path, cpu_max: str, expected: int
) -> None:
    """``cpu.max`` limits the count to its quota over period, rounded up; ``max`` means no limit."""
    _write(tmp_path, "cpu.max", cpu_max)
    assert many_cpus(cgroup_root=tmp_path) == expected


def test_cpu_count_v2_quota_capped_by_real_count(tmp_path: Path) -> None:
    """A quota of 1.5 CPUs allows 2, but never more than the machine really has."""
    real = _real_count(tmp_path)
    _write(tmp_path, "cpu.max", "150000 100000")
    assert cpu_count(cgroup_root=tmp_path) == min(2, real)
    _write(tmp_path, "cpu.max", f"{(real + 10) * 100000} 100000")
    assert cpu_count(cgroup_root=tmp_path) == real


@pytest.mark.parametrize("controller", ["cpu", "cpu,cpuacct"])
@pytest.mark.parametrize(
    ("quota", "period", "expected"),
    [("-1", "100000", 64), ("200000", "100000", 2), ("50000", "100000", 1), ("350000", "100000", 4)],
)
def test_cpu_count_follows_cgroup_v1_quota(
    many_cpus: Callable[..., int], tmp_path: Path, controller: str, quota: str, period: str, expected: int
) -> None:
    """``cpu.cfs_quota_us`` over ``cpu.cfs_period_us`` limits the count; a quota of -1 means no limit."""
    _write(tmp_path, f"{controller}/cpu.cfs_quota_us", quota + "\n")
    _write(tmp_path, f"{controller}/cpu.cfs_period_us", period + "\n")
    assert many_cpus(cgroup_root=tmp_path) == expected


def test_cpu_count_v1_quota_ignored_without_period(many_cpus: Callable[..., int], tmp_path: Path) -> None:
    """A quota without its period cannot be turned into CPUs, so it is no limit."""
    _write(tmp_path, "cpu/cpu.cfs_quota_us", "200000")
    assert many_cpus(cgroup_root=tmp_path) == 64


def test_cpu_count_smallest_limit_when_v1_and_v2_both_present(many_cpus: Callable[..., int], tmp_path: Path) -> None:
    """When several limits apply, the tightest one wins."""
    _write(tmp_path, "cpu.max", "800000 100000")
    _write(tmp_path, "cpu/cpu.cfs_quota_us", "300000")
    _write(tmp_path, "cpu/cpu.cfs_period_us", "100000")
    assert many_cpus(cgroup_root=tmp_path) == 3
    assert many_cpus(cgroup_root=tmp_path, affinity=lambda: {0, 1}) == 2


@pytest.mark.parametrize(
    "cpu_max",
    ["", "banana", "max", "100000", "abc 100000", "100000 abc", "0 100000", "-5 100000", "100000 0", "1 2 3"],
)
def test_cpu_count_ignores_garbage_cpu_max(many_cpus: Callable[..., int], tmp_path: Path, cpu_max: str) -> None:
    """Unparsable or invalid ``cpu.max`` contents are treated as no limit."""
    _write(tmp_path, "cpu.max", cpu_max)
    assert many_cpus(cgroup_root=tmp_path) == 64


@pytest.mark.parametrize(("quota", "period"), [("lots", "100000"), ("200000", "often"), ("0", "100000"), ("", "")])
def test_cpu_count_ignores_garbage_v1_files(
    many_cpus: Callable[..., int], tmp_path: Path, quota: str, period: str
) -> None:
    """Unparsable or invalid cgroup v1 files are treated as no limit."""
    _write(tmp_path, "cpu/cpu.cfs_quota_us", quota)
    _write(tmp_path, "cpu/cpu.cfs_period_us", period)
    assert many_cpus(cgroup_root=tmp_path) == 64


def test_cpu_count_ignores_unreadable_cpu_max(many_cpus: Callable[..., int], tmp_path: Path) -> None:
    """A ``cpu.max`` that is not valid text or not a file is no limit."""
    (tmp_path / "cpu.max").write_bytes(b"\xff\xfe\x00 100000")
    assert many_cpus(cgroup_root=tmp_path) == 64
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu.max").mkdir()
    assert many_cpus(cgroup_root=tmp_path) == 64


@pytest.mark.parametrize(("cpus", "expected"), [({0}, 1), ({0, 3, 5}, 3), (set(range(100)), 64), (set(), 64)])
def test_cpu_count_follows_affinity(
    many_cpus: Callable[..., int], tmp_path: Path, cpus: set[int], expected: int
) -> None:
    """The affinity set limits the count; an empty answer is no information, not zero CPUs."""
    assert many_cpus(cgroup_root=tmp_path, affinity=lambda: cpus) == expected


def test_cpu_count_affinity_of_one_cpu_on_real_machine(tmp_path: Path) -> None:
    """A process pinned to CPU 0 may use one CPU whatever the machine has."""
    assert cpu_count(cgroup_root=tmp_path, affinity=lambda: {0}) == 1


@pytest.mark.parametrize("reported", [None, 0])
def test_cpu_count_never_below_one_when_os_cannot_tell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reported: int | None
) -> None:
    """When ``os.cpu_count()`` returns None (or 0), one CPU is assumed."""
    monkeypatch.setattr(os, "cpu_count", lambda: reported)
    assert cpu_count(cgroup_root=tmp_path, affinity=set) == 1


def test_cpu_count_accepts_str_root(tmp_path: Path) -> None:
    """The cgroup root may be a plain string path."""
    _write(tmp_path, "cpu.max", "50000 100000")
    assert cpu_count(cgroup_root=str(tmp_path)) == 1


# --- real probes ------------------------------------------------------------------------------------------------------


def test_cpu_count_physical_between_one_and_logical() -> None:
    """Physical cores, when known, are at least one and at most the logical CPUs."""
    physical = cpu_count_physical()
    if physical is not None:
        assert 1 <= physical <= (os.cpu_count() or 1)


def test_is_gil_enabled_matches_interpreter() -> None:
    """The GIL probe agrees with ``sys._is_gil_enabled`` where it exists, and is True before 3.13."""
    check = getattr(sys, "_is_gil_enabled", None)
    assert is_gil_enabled() is (True if check is None else check())


@linux_only
def test_probe_platform_sane_on_this_linux_machine() -> None:
    """The probe describes this Linux interpreter: fork exists, CPUs and, when asked for, memory are positive."""
    facts = probe_platform(memory=True)
    assert facts.system == "linux"
    assert facts.python_version == sys.version_info[:2]
    assert "fork" in facts.start_methods
    assert "spawn" in facts.start_methods
    assert facts.default_start_method in facts.start_methods
    assert 1 <= facts.cpu_count <= facts.cpu_logical
    assert facts.cpu_count == cpu_count()
    assert facts.python_threads >= 1
    assert facts.native_threads >= 1
    assert 0 < facts.memory_available_bytes <= facts.memory_total_bytes
    assert facts.gil_enabled is is_gil_enabled()
    assert facts.in_worker is False
    assert facts.in_main_bootstrap is False


def test_probe_platform_rereads_threads_each_call() -> None:
    """Static facts are reused between calls while thread counts are probed afresh."""
    before = probe_platform()
    with helpers.a_waiting_thread():
        during = probe_platform()
    assert during.python_threads == before.python_threads + 1
    static = ("system", "python_version", "start_methods", "cpu_count", "cpu_logical", "memory_total_bytes")
    assert attrs.asdict(during, filter=lambda a, _: a.name in static) == attrs.asdict(
        before, filter=lambda a, _: a.name in static
    )


def test_probe_platform_skips_memory_when_told() -> None:
    """No rule reads memory: a call's probe (``memory=False``) leaves both fields at 0 and the report says so."""
    facts = probe_platform(memory=False)
    assert (facts.memory_total_bytes, facts.memory_available_bytes) == (0, 0)
    assert dict(platform_report(facts))["memory"] == "not probed"


def test_probe_platform_leaves_start_method_unset(tmp_path: Path) -> None:
    """Probing does not fix the global start method, so the user can still call ``set_start_method``."""
    code = textwrap.dedent(
        """
        import multiprocessing
        from autopar._platform import probe_platform
        facts = probe_platform()
        print(multiprocessing.get_start_method(allow_none=True))
        print(facts.default_start_method in facts.start_methods)
        multiprocessing.set_start_method("spawn")
        print(probe_platform().default_start_method)
        """
    )
    assert _run_python(["-c", code], tmp_path).split() == ["None", "True", "spawn"]


@pytest.mark.parametrize(
    ("main_file", "expected"),
    [(None, False), ("<stdin>", False), ("missing.py", False), ("present.py", True)],
)
def test_main_importable_follows_main_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, main_file: str | None, expected: bool
) -> None:
    """Only a ``__main__.__file__`` that exists on disk counts as importable."""
    (tmp_path / "present.py").write_text("")
    main = types.ModuleType("__main__")
    if main_file is not None:
        main.__file__ = main_file if main_file.startswith("<") else str(tmp_path / main_file)
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert main_importable() is expected


def test_main_importable_false_under_python_c(tmp_path: Path) -> None:
    """Under ``python -c`` there is no main file to re-import."""
    code = "from autopar._main_module import main_importable; from autopar._platform import probe_platform; print(main_importable(), probe_platform().main_importable)"
    assert _run_python(["-c", code], tmp_path).split() == ["False", "False"]


def test_main_importable_false_from_stdin(tmp_path: Path) -> None:
    """A program read from standard input (``python -``) cannot be re-imported either."""
    code = "from autopar._main_module import main_importable; print(main_importable())\n"
    assert _run_python(["-"], tmp_path, stdin=code).strip() == "False"


def test_main_importable_true_for_script_file(tmp_path: Path) -> None:
    """A script run from a file can be re-imported by spawn children."""
    script = tmp_path / "script.py"
    script.write_text(
        "from autopar._main_module import main_importable\nfrom autopar._platform import probe_platform\nprint(main_importable(), probe_platform().main_importable)\n"
    )
    assert _run_python([str(script)], tmp_path).split() == ["True", "True"]


def test_in_main_bootstrap_false_in_main_process() -> None:
    """The test process is not a child importing its main module."""
    assert in_main_bootstrap() is False


def test_in_main_bootstrap_true_in_spawn_child_importing_main(tmp_path: Path) -> None:
    """A spawn child re-importing an unguarded script sees the bootstrap flag while the parent does not."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing
            import sys
            from autopar._main_module import in_main_bootstrap

            def noop():
                pass

            print(__name__, in_main_bootstrap(), flush=True)
            if __name__ == "__main__":
                process = multiprocessing.get_context("spawn").Process(target=noop)
                process.start()
                process.join()
                sys.exit(process.exitcode)
            """
        )
    )
    lines = _run_python([str(script)], tmp_path).splitlines()
    assert lines == ["__main__ False", "__mp_main__ True"]


def test_in_worker_false_outside_workers() -> None:
    """A plain process is not an autopar worker."""
    assert in_worker() is False


def test_count_threads_rises_when_thread_started() -> None:
    """Starting a thread adds one Python thread and at least one native thread."""
    python_before, native_before = count_threads()
    with helpers.a_waiting_thread():
        python_during, native_during = count_threads()
    assert python_during == python_before + 1
    assert native_during >= native_before + 1
    assert native_during >= python_during


def test_native_thread_count_matches_psutil() -> None:
    """The native thread count (read from ``/proc`` on Linux) is the one psutil gives."""
    import psutil

    release = threading.Event()
    threads = [threading.Thread(target=release.wait) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        _, native = count_threads()
        expected = psutil.Process().num_threads()
    finally:
        release.set()
        for thread in threads:
            thread.join(timeout=SUBPROCESS_TIMEOUT_S)
    assert native == expected


def test_first_serial_call_on_linux_does_not_import_psutil(tmp_path: Path) -> None:
    """On Linux, a call's facts come from ``/proc`` and ``os``: psutil (about 10 ms to import) stays unloaded."""
    if not sys.platform.startswith("linux"):
        pytest.skip("other systems read thread counts through psutil")
    code = "import sys, autopar; autopar.map(abs, [-1, 2], strategy='serial'); print('psutil' in sys.modules)"
    done = helpers.run_python(["-c", code], tmp_path, timeout=SUBPROCESS_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# --- report -----------------------------------------------------------------------------------------------------------


def test_platform_report_mentions_fork_and_gil() -> None:
    """The report of this machine has a row per start method and names the GIL state."""
    rows = platform_report(probe_platform())
    labels = [label for label, _ in rows]
    for label in ("OS", "Python", "start methods", "fork", "forkserver", "spawn", "CPUs", "memory", "cloudpickle"):
        assert label in labels
    text = "\n".join(f"{label}: {value}" for label, value in rows)
    assert "fork" in text
    assert "GIL" in text
    assert all(isinstance(value, str) and value for _, value in rows)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        pytest.param(
            PlatformFacts(
                system="windows", python_version=(3, 13), start_methods=("spawn",), default_start_method="spawn"
            ),
            {"fork": "not available", "spawn": "available, safe", "auto process methods": "spawn"},
            id="windows",
        ),
        pytest.param(
            PlatformFacts(
                system="darwin",
                python_version=(3, 12),
                start_methods=("spawn", "fork", "forkserver"),
                default_start_method="spawn",
            ),
            {"fork": "unsafe: macOS", "auto process methods": "forkserver, spawn"},
            id="macos",
        ),
        pytest.param(
            PlatformFacts(
                system="linux",
                python_version=(3, 13),
                gil_enabled=False,
                start_methods=("fork", "spawn", "forkserver"),
                default_start_method="fork",
                cpu_count=3,
                cpu_logical=8,
                cpu_physical=4,
                memory_total_bytes=16 * 1024**3,
                memory_available_bytes=4 * 1024**3,
            ),
            {
                "Python": "free-threaded, GIL disabled",
                "fork": "available, safe",
                "CPUs": "8 logical, 4 physical, 3 usable",
                "memory": "16.0 GiB total, 4.0 GiB available",
                "cloudpickle": "not installed",
            },
            id="linux-free-threaded",
        ),
        pytest.param(
            PlatformFacts(system="emscripten", python_version=(3, 12)),
            {"start methods": "none", "auto process methods": "none", "CPUs": "unknown physical"},
            id="no-processes",
        ),
    ],
)
def test_platform_report_rows_for_injected_facts(facts: PlatformFacts, expected: dict[str, str]) -> None:
    """Each report row reflects the injected facts and the start-method verdicts."""
    rows = dict(platform_report(facts))
    for label, fragment in expected.items():
        assert fragment in rows[label], (label, rows[label])
