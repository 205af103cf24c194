"""``UnsafeStrategyWarning``, emitted once per (start method, reason) and pointed at the user's call."""

from __future__ import annotations

import os
import sys
import warnings

from ._errors import UnsafeStrategyWarning
from ._forksafe import fork_safe_lock

__all__ = ["forget_warnings", "warn_unsafe"]

_warned: set[tuple[str, str]] = set()
_warned_lock = fork_safe_lock()
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_unsafe(method: str, reason: str) -> None:
    """Warn that the forced ``method`` is unsafe here, once per reason."""
    with _warned_lock:
        if (method, reason) in _warned:
            return
        _warned.add((method, reason))
    warnings.warn(f"strategy {method!r} is unsafe here: {reason}", UnsafeStrategyWarning, stacklevel=_outside_level())


def forget_warnings() -> None:
    """Warn again about every unsafe method, as in a new process (tests use it between cases)."""
    with _warned_lock:
        _warned.clear()


def _outside_level() -> int:
    """The ``stacklevel`` of the first frame outside autopar: the warning points at the user's call."""
    frame = sys._getframe(1)  # warn_unsafe
    level = 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    return level
