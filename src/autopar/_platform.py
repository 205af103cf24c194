"""Probes the machine and the interpreter into ``PlatformFacts``.

This module owns every OS call behind the facts the pure layers reason about: the usable CPU
count (affinity and cgroup v1/v2 quotas, both injectable for tests), thread counts, memory,
the start methods of ``multiprocessing`` and whether subinterpreters exist; ``_main_module`` answers whether
``__main__`` can be re-imported.  ``probe_platform()`` caches what cannot change and re-reads the rest per call.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import multiprocessing
import multiprocessing.context
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

import attrs

from ._core._workload import MIN_ITEM_PEAK_BYTES
from ._main_module import in_main_bootstrap, main_importable
from ._model import PlatformFacts
from ._shared import pool_shm_problem
from ._worker import is_inside_worker as in_worker

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._model import Measurements


__all__ = [
    "count_threads",
    "cpu_count",
    "cpu_count_physical",
    "in_worker",
    "is_gil_enabled",
    "memory_bytes",
    "probe_platform",
    "with_memory",
]


# --- CPUs -------------------------------------------------------------------------------------------------------------


def _read_text(path: str) -> str | None:
    """The stripped contents of ``path``, or None when it cannot be read."""
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _quota_cpus(quota: str | None, period: str | None) -> int | None:
    """CPUs allowed by a CFS quota and period (rounded up), or None for no limit or unparsable values."""
    if quota is None or period is None:
        return None
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    # -1 (v1) means no limit; zero or other negatives are not valid quotas, so they are ignored too.
    if quota_us <= 0 or period_us <= 0:
        return None
    return max(1, math.ceil(quota_us / period_us))


def _cgroup_v2_cpus(root: str) -> int | None:
    """CPUs allowed by ``<root>/cpu.max`` ("max 100000" or "150000 100000"), or None for no limit."""
    text = _read_text(os.path.join(root, "cpu.max"))
    if text is None:
        return None
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _quota_cpus(fields[0], fields[1])


def _cgroup_v1_cpus(root: str) -> int | None:
    """CPUs allowed by ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` under a v1 cpu controller, or None."""
    for controller in ("cpu", "cpu,cpuacct"):
        directory = os.path.join(root, controller)
        quota = _read_text(os.path.join(directory, "cpu.cfs_quota_us"))
        period = _read_text(os.path.join(directory, "cpu.cfs_period_us"))
        cpus = _quota_cpus(quota, period)
        if cpus is not None:
            return cpus
    return None


def _default_affinity() -> set[int] | None:
    """The CPUs this process may run on, or None where the platform cannot say."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return set(os.sched_getaffinity(0))
        except OSError:
            return None
    psutil = _psutil()
    try:
        process = psutil.Process()
        if hasattr(process, "cpu_affinity"):  # absent on macOS
            return {int(cpu) for cpu in process.cpu_affinity()}
    except (OSError, psutil.Error):
        return None
    return None


def cpu_count(
    *,
    cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup",
    affinity: Callable[[], set[int]] | None = None,
) -> int:
    """The number of CPUs this process may really use.

    The smallest of ``os.cpu_count()``, the size of the CPU affinity set and
    the cgroup CPU quota (v2 ``cpu.max``; v1 ``cpu.cfs_quota_us`` over
    ``cpu.cfs_period_us`` under ``cpu/`` or ``cpu,cpuacct/``), a fractional
    quota rounded up.  Missing, unreadable or unparsable files mean no limit.

    Args:
        cgroup_root: where the cgroup file system is mounted.
        affinity: returns the set of CPUs this process may run on; by default
            ``os.sched_getaffinity`` or psutil, where the platform has one.

    Returns:
        At least 1.
    """
    limits = [os.cpu_count() or 1]
    cpus = affinity() if affinity is not None else _default_affinity()
    if cpus:
        limits.append(len(cpus))
    root = os.fspath(cgroup_root)
    limits.extend(quota for quota in (_cgroup_v2_cpus(root), _cgroup_v1_cpus(root)) if quota is not None)
    return max(1, min(limits))


@functools.cache
def cpu_count_physical() -> int | None:
    """The number of physical cores, or None where psutil cannot tell."""
    psutil = _psutil()
    try:
        count = psutil.cpu_count(logical=False)
    except (OSError, psutil.Error):
        return None
    return int(count) if count else None


# --- interpreter and process state ------------------------------------------------------------------------------------


def is_gil_enabled() -> bool:
    """False only on a free-threaded build running with the GIL disabled."""
    check: Callable[[], bool] | None = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


@functools.lru_cache(maxsize=1)
def _process(pid: int) -> Any:
    """A psutil handle on this process; keyed by pid so a forked child gets its own."""
    return _psutil().Process(pid)


def _psutil() -> Any:
    """psutil, imported on first use: it costs about 10 ms, and Linux answers most questions without it."""
    import psutil  # type: ignore[import-untyped,unused-ignore]

    return psutil


def _native_thread_count() -> int | None:
    """The OS threads of this process, from ``/proc`` where there is one (Linux), else from psutil, else None."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        pass
    psutil = _psutil()
    try:
        return int(_process(os.getpid()).num_threads())
    except (OSError, psutil.Error):
        return None


def count_threads() -> tuple[int, int]:
    """(Python threads, native OS threads) of this process.

    Native threads include those of BLAS or OpenMP pools, which Python does not
    see; where psutil cannot count them, the Python count stands in.
    """
    python_threads = threading.active_count()
    native_threads = _native_thread_count()
    return python_threads, python_threads if native_threads is None else native_threads


# --- facts ------------------------------------------------------------------------------------------------------------


def _system() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "win32":
        return "windows"
    return sys.platform


def _platform_default_method(system: str, version: tuple[int, int]) -> str:
    """CPython's default start method by platform, for when its context cannot be read."""
    if system in ("windows", "darwin"):
        return "spawn"
    return "forkserver" if version >= (3, 14) else "fork"


def _default_start_method() -> str:
    """The start method ``multiprocessing`` uses by default, without fixing it.

    ``get_start_method()`` and ``get_context()`` without arguments both fix
    the global context, after which the user's own ``set_start_method()``
    raises RuntimeError; so the unset default is read from the context object.
    """
    chosen = multiprocessing.get_start_method(allow_none=True)
    if chosen:
        return chosen
    default = getattr(multiprocessing.context._default_context, "_default_context", None)
    name = getattr(default, "_name", None)
    if isinstance(name, str):
        return name
    return _platform_default_method(_system(), (sys.version_info[0], sys.version_info[1]))


@functools.cache
def _static_facts() -> dict[str, Any]:
    """The facts that do not change while the process runs, probed once."""
    return {
        "system": _system(),
        "python_version": (sys.version_info[0], sys.version_info[1]),
        "gil_enabled": is_gil_enabled(),
        "start_methods": tuple(multiprocessing.get_all_start_methods()),
        "cpu_count": cpu_count(),
        "cpu_logical": os.cpu_count() or 1,
        "cloudpickle_available": importlib.util.find_spec("cloudpickle") is not None,
        "subinterpreters": sys.version_info >= (3, 14) and importlib.util.find_spec("_interpreters") is not None,
        "shm_problem": pool_shm_problem(),
    }


def memory_bytes() -> tuple[int, int]:
    """(total, available) bytes of memory, or zeros where psutil cannot tell."""
    psutil = _psutil()
    try:
        memory = psutil.virtual_memory()
        return int(memory.total), int(memory.available)
    except (OSError, psutil.Error):
        return 0, 0


def probe_platform(*, memory: bool = True) -> PlatformFacts:
    """The facts about this machine and interpreter, as of now.

    The static parts (system, Python version, start methods, CPU counts, cloudpickle, ``/dev/shm``) are
    probed once per process; threads, the default start method, ``__main__``, the worker,
    bootstrap and daemon flags are re-read on each call (a forked child may differ).

    Args:
        memory: also read total and available memory and the physical core count; ``False`` leaves
            them at 0 and None and saves the system calls (every ``map`` call probes without them, and reads the
            available memory only where its items' memory may limit the workers: ``with_memory``).
    """
    python_threads, native_threads = count_threads()
    memory_total, memory_available = memory_bytes() if memory else (0, 0)
    return PlatformFacts(
        **_static_facts(),
        default_start_method=_default_start_method(),
        python_threads=python_threads,
        native_threads=native_threads,
        memory_total_bytes=memory_total,
        memory_available_bytes=memory_available,
        cpu_physical=cpu_count_physical() if memory else None,
        main_importable=main_importable(),
        in_worker=in_worker(),
        in_main_bootstrap=in_main_bootstrap(),
        daemon=bool(multiprocessing.current_process().daemon),
    )


def with_memory(facts: PlatformFacts, m: Measurements) -> PlatformFacts:
    """``facts`` with today's available memory when the items' memory may limit the workers; else ``facts``."""
    if m.peak_growth_bytes < MIN_ITEM_PEAK_BYTES or facts.memory_available_bytes:
        return facts
    total, available = memory_bytes()
    return attrs.evolve(facts, memory_total_bytes=total, memory_available_bytes=available)
