"""A worker function whose module loads psutil through another pure-Python module.

Auto's rule for subinterpreters sees no extension module among this module's
globals, so only the trial in a subinterpreter finds that it does not load there.
"""

from __future__ import annotations

import interp_native_dep  # noqa: F401 - imported for what it imports
from interp_helpers import square_once

__all__ = ["square_once_indirect"]


def square_once_indirect(arg: tuple[str, int]) -> int:
    """``interp_helpers.square_once``, from a module that does not load in a subinterpreter."""
    return square_once(arg)
