"""Platform facts the rule tests inject: Linux with and without threads, 3.14, macOS, Windows, free-threaded.

The ``_314`` facts of macOS and Windows, and ``LINUX_314_INTERP``, have subinterpreters.
"""

from __future__ import annotations

import attrs

from autopar._model import PlatformFacts

__all__ = [
    "ALL_POSIX",
    "FREE_THREADED",
    "LINUX",
    "LINUX_314",
    "LINUX_NATIVE",
    "LINUX_THREADS",
    "LINUX_314_INTERP",
    "LINUX_FORK_314_INTERP",
    "MACOS",
    "MACOS_314",
    "NO_PROCESSES",
    "WINDOWS",
    "WINDOWS_314",
]

ALL_POSIX = ("fork", "spawn", "forkserver")

LINUX = PlatformFacts(
    system="linux", python_version=(3, 12), start_methods=ALL_POSIX, default_start_method="fork", cpu_count=2
)
#: A Python thread is running, so fork is unsafe.
LINUX_THREADS = attrs.evolve(LINUX, python_threads=3)
#: A BLAS pool started native threads, so fork is unsafe.
LINUX_NATIVE = attrs.evolve(LINUX, native_threads=5)
LINUX_314 = attrs.evolve(
    LINUX, python_version=(3, 14), start_methods=("forkserver", "fork", "spawn"), default_start_method="forkserver"
)
MACOS = PlatformFacts(
    system="darwin",
    python_version=(3, 12),
    start_methods=("spawn", "fork", "forkserver"),
    default_start_method="spawn",
    cpu_count=2,
)
WINDOWS = PlatformFacts(
    system="windows", python_version=(3, 12), start_methods=("spawn",), default_start_method="spawn", cpu_count=2
)
FREE_THREADED = attrs.evolve(LINUX, python_version=(3, 13), gil_enabled=False)
NO_PROCESSES = PlatformFacts(system="emscripten", python_version=(3, 12), cpu_count=2)

#: Python 3.14 with subinterpreters: Linux (forkserver by default), Linux where fork is the default
#: (a program that set it), macOS and Windows.
LINUX_314_INTERP = attrs.evolve(LINUX_314, subinterpreters=True)
LINUX_FORK_314_INTERP = attrs.evolve(LINUX_314_INTERP, default_start_method="fork")
MACOS_314 = attrs.evolve(MACOS, python_version=(3, 14), subinterpreters=True)
WINDOWS_314 = attrs.evolve(WINDOWS, python_version=(3, 14), subinterpreters=True)
