"""Exceptions and warnings raised by autopar.

Hierarchy::

    Exception
     +-- AutoparError
     |    +-- WorkerCrashedError   (also concurrent.futures.process.BrokenProcessPool)
     |    +-- WorkerStartError     (also OSError)
     |    +-- SerializationError   (also pickle.PicklingError)
     |    +-- RemoteError          (a worker exception that could not be rebuilt)
     +-- Warning
          +-- UnsafeStrategyWarning

Timeouts raise the builtin ``TimeoutError``; bad arguments raise ``TypeError``
or ``ValueError``.  A worker's exception travels back to the caller inside an
``ExceptionWithTraceback`` (built by ``capture``), which unpickles as the
exception itself with a ``RemoteTraceback`` as its ``__cause__``.  This module
imports the standard library only, so every other module (the worker included)
can import it without cycles.
"""

from __future__ import annotations

import pickle
import traceback
from concurrent.futures.process import BrokenProcessPool
from typing import Any

__all__ = [
    "AutoparError",
    "ExceptionWithTraceback",
    "RemoteError",
    "RemoteTraceback",
    "SerializationError",
    "UnsafeStrategyWarning",
    "WorkerCrashedError",
    "WorkerStartError",
    "capture",
]


class AutoparError(Exception):
    """Base class of every autopar error."""


class WorkerCrashedError(AutoparError, BrokenProcessPool):
    """A worker process died while running an item.

    Attributes:
        index: the input position of the item that was running, or None.
        exitcode: the process exit code; negative for a signal (``-11`` is SIGSEGV).
    """

    def __init__(self, msg: str, index: int | None = None, exitcode: int | None = None) -> None:
        super().__init__(msg, index, exitcode)
        self.index = index
        self.exitcode = exitcode

    def __str__(self) -> str:
        return str(self.args[0])


class WorkerStartError(AutoparError, OSError):
    """Worker processes could not start here: a process limit, too many open files, a daemonic process.

    Raised for a forced process strategy (under auto the next candidate runs
    instead).  The message names the cause; the operating system's error, when
    there is one, is the ``__cause__``.  Also an ``OSError``, which is what the
    standard library raises when a process cannot start.

    Attributes:
        reason: the cause alone, without the strategy's name.
        limit: the resource limit of this process behind it (``"RLIMIT_NPROC"``, ``"RLIMIT_NOFILE"``), or None.
    """

    reason: str = ""
    limit: str | None = None

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class SerializationError(AutoparError, pickle.PicklingError):
    """An object could not be pickled or unpickled to cross a process boundary."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RemoteError(AutoparError):
    """A worker raised an exception that could not be rebuilt in the caller.

    Attributes:
        type_name: the qualified name of the original exception type.
    """

    def __init__(self, msg: str, type_name: str = "") -> None:
        super().__init__(msg, type_name)
        self.type_name = type_name

    def __str__(self) -> str:
        return str(self.args[0])


class RemoteTraceback(Exception):
    """Carries the worker's traceback text; attached as ``__cause__``."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


def _rebuild_exc(exc: BaseException, tb: str) -> BaseException:
    exc.__cause__ = RemoteTraceback(tb)
    return exc


class ExceptionWithTraceback:
    """A picklable pair of an exception and its traceback text, rebuilt as ``exc`` with ``__cause__``.

    An exception that does not survive a pickle round trip (its class cannot be
    rebuilt from its arguments) is replaced by ``RemoteError`` naming the type.
    """

    def __init__(self, exc: BaseException, tb: str, *, check_pickle: bool) -> None:
        if check_pickle:
            try:
                pickle.loads(pickle.dumps(exc))
            except Exception as why:
                name = f"{type(exc).__module__}.{type(exc).__qualname__}"
                msg = f"{name}: {exc} (the exception could not be sent back: {why!r})"
                exc = RemoteError(msg, name)
        self.exc = exc
        self.tb = tb

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_exc, (self.exc, self.tb)

    def rebuild(self) -> BaseException:
        """The exception with its traceback text attached, as the caller sees it."""
        return _rebuild_exc(self.exc, self.tb)


def capture(exc: BaseException, *, check_pickle: bool) -> ExceptionWithTraceback:
    """Wrap ``exc`` with its formatted traceback for the trip back to the caller."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ExceptionWithTraceback(exc, "\n" + text, check_pickle=check_pickle)


class UnsafeStrategyWarning(UserWarning):
    """A forced strategy is available here but known to be unsafe (fork after threads, fork on macOS)."""


# Public classes report the public path: in reprs and tracebacks, and when pickled by reference.
AutoparError.__module__ = WorkerCrashedError.__module__ = SerializationError.__module__ = "autopar"
RemoteError.__module__ = UnsafeStrategyWarning.__module__ = WorkerStartError.__module__ = "autopar"
