"""Imports psutil, whose extension module does not load in a subinterpreter (for ``interp_indirect``)."""

from __future__ import annotations

import psutil

CPUS = psutil.cpu_count()


def plus_cpus(x: int) -> int:
    """x plus the CPU count psutil read at import."""
    return x + (CPUS or 0)
