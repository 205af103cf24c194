"""What the OS says of the calling thread and process, where it says it: context switches, time queued, peak memory.

Calibration's ``Clocks`` read these; each returns None (or 0) where the platform has no such reading.
"""

from __future__ import annotations

import sys

__all__ = ["peak_bytes", "thread_queued", "thread_waits"]


def thread_waits() -> int | None:
    """Voluntary context switches of the calling thread so far (Linux), else None."""
    try:
        import resource  # POSIX only; RUSAGE_THREAD is Linux only

        return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    except (ImportError, AttributeError, OSError, ValueError):
        return None


def thread_queued() -> float | None:
    """Seconds the calling thread has waited, runnable, for a CPU (Linux's schedstat), else None."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def peak_bytes() -> int:
    """The process's peak resident memory so far, in bytes, else 0.

    Linux's ``VmHWM`` starts afresh at ``exec``; ``ru_maxrss`` (other POSIX systems) there keeps
    the peak of the process the program was started from, a large one's hiding the items' growth.
    """
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return 0
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS counts bytes, Linux KiB
