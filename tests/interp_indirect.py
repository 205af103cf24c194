"""A worker function whose module loads psutil at import, through a module it keeps no reference to.

Auto's rule for subinterpreters follows what the module's globals refer to and
sees no extension module, so only the trial in a subinterpreter finds that this
module does not load there (as with plugins imported for their side effects).
"""

from __future__ import annotations

import importlib

from interp_helpers import square_once

importlib.import_module("interp_native_dep")  # imports psutil

__all__ = ["square_once_indirect"]


def square_once_indirect(arg: tuple[str, int]) -> int:
    """``interp_helpers.square_once``, from a module that does not load in a subinterpreter."""
    return square_once(arg)
