"""A worker function whose module refers to a pure-Python module that imports psutil."""

from __future__ import annotations

import interp_native_dep

__all__ = ["plus_cpus_indirect"]


def plus_cpus_indirect(x: int) -> int:
    """``interp_native_dep.plus_cpus``, one module further away from psutil."""
    return interp_native_dep.plus_cpus(x)
