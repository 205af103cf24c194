"""Exceptions and warnings raised by autopar.

Hierarchy::

    Exception
     +-- AutoparError
     |    +-- WorkerCrashedError   (also concurrent.futures.process.BrokenProcessPool)
     |    +-- SerializationError   (also pickle.PicklingError)
     |    +-- RemoteError          (a worker exception that could not be rebuilt)
     +-- Warning
          +-- UnsafeStrategyWarning

Timeouts raise the builtin ``TimeoutError``; bad arguments raise ``TypeError``
or ``ValueError``.  This module imports the standard library only, so every
other module (the worker included) can import it without cycles.
"""

from __future__ import annotations

import pickle
from concurrent.futures.process import BrokenProcessPool

__all__ = [
    "AutoparError",
    "RemoteError",
    "RemoteTraceback",
    "SerializationError",
    "UnsafeStrategyWarning",
    "WorkerCrashedError",
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


class UnsafeStrategyWarning(UserWarning):
    """A forced strategy is available here but known to be unsafe (fork after threads, fork on macOS)."""


# Public classes report the public path: in reprs and tracebacks, and when pickled by reference.
AutoparError.__module__ = WorkerCrashedError.__module__ = SerializationError.__module__ = "autopar"
RemoteError.__module__ = UnsafeStrategyWarning.__module__ = "autopar"
