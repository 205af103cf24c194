"""What a refused start means: the error for workers that could not start, naming the limit behind it.

A process pool whose fork or exec fails, or a thread pool whose thread will not
start, usually met a limit of the process (``RLIMIT_NPROC`` counts threads as
well as processes, ``RLIMIT_NOFILE`` the pipes) or of the machine.  The error
names the cause and the limit's current value, so a forced strategy fails with
words a user can act on, and auto gives way to the next candidate with the same words.
"""

from __future__ import annotations

import errno

from ._errors import WorkerStartError

__all__ = ["limit_rows", "start_error"]

#: errno of a failed start -> (what it means, the resource limit behind it).
_START_CAUSES = {
    errno.EAGAIN: ("this process may start no more processes or threads", "RLIMIT_NPROC"),
    errno.EMFILE: ("this process has too many open files", "RLIMIT_NOFILE"),
    errno.ENFILE: ("the system has too many open files", None),
    errno.ENOMEM: ("there is not enough memory to start a process", None),
}


def _limit_text(name: str | None) -> str:
    if name is None:
        return ""
    try:
        import resource
    except ImportError:
        return f"{name}, "
    which = getattr(resource, name, None)
    if which is None:
        return f"{name}, "
    soft, _ = resource.getrlimit(which)
    return f"{name} is {'unlimited' if soft == resource.RLIM_INFINITY else soft}, "


def start_error(strategy: str, exc: BaseException, code: int | None = None) -> WorkerStartError:
    """The error for ``strategy`` workers that could not start, naming the cause of ``exc``.

    ``code`` is the errno when ``exc`` carries none (a thread that will not start raises a bare ``RuntimeError``).
    """
    cause, limit = _START_CAUSES.get(code or getattr(exc, "errno", None) or -1, (None, None))
    if cause is None:
        cause = "the operating system refused" if isinstance(exc, OSError) else "the forkserver failed"
    reason = f"{cause} ({_limit_text(limit)}{exc!r})"
    error = WorkerStartError(f"{strategy} workers could not start: {reason}")
    error.reason = reason
    error.limit = limit
    error.__cause__ = exc
    return error


def _user_tasks() -> int | None:
    """Processes and threads of this process's real user: what ``RLIMIT_NPROC`` counts on Linux."""
    import psutil  # type: ignore[import-untyped,unused-ignore]

    try:
        uid = psutil.Process().uids().real
        return sum(
            p.info["num_threads"] or 0
            for p in psutil.process_iter(["uids", "num_threads"])
            if p.info["uids"] and p.info["uids"].real == uid
        )
    except (AttributeError, OSError, psutil.Error):
        return None


def _open_files() -> int | None:
    """Descriptors open in this process: what ``RLIMIT_NOFILE`` bounds."""
    import psutil  # type: ignore[import-untyped,unused-ignore]

    try:
        return int(psutil.Process().num_fds())
    except (AttributeError, OSError, psutil.Error):
        return None


def limit_rows() -> list[tuple[str, str]]:
    """Rows of (label, value) for ``autopar info``: the limits a pool's start meets, and what is in use now."""
    try:
        import resource
    except ImportError:
        return []
    rows = []
    for name, used, what in (
        ("RLIMIT_NPROC", _user_tasks, "processes and threads of this user"),
        ("RLIMIT_NOFILE", _open_files, "open in this process"),
    ):
        which = getattr(resource, name, None)
        if which is None:
            continue
        soft, _ = resource.getrlimit(which)
        count = used()
        now = "" if count is None else f" ({what}: {count})"
        rows.append((name, f"{'unlimited' if soft == resource.RLIM_INFINITY else soft}{now}"))
    return rows
