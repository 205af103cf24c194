"""Native thread pools (BLAS, OpenMP, vecLib, numexpr): the environment variables that size them.

The one place autopar writes them: ``limit_native_threads`` inside a worker
process, and ``native_thread_env`` around starting one, so a spawn or
forkserver child reads its limit before it imports a numeric library.  A
variable the user set is never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["NATIVE_THREAD_VARS", "limit_native_threads", "native_thread_env"]

#: Environment variables that size native thread pools (BLAS, OpenMP, vecLib, numexpr).
NATIVE_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "BLIS_NUM_THREADS",
)


def _set_defaults(count: int) -> None:
    for var in NATIVE_THREAD_VARS:
        os.environ.setdefault(var, str(count))


def limit_native_threads(count: int) -> None:
    """Limit BLAS/OpenMP pools to ``count`` threads, in the environment and in loaded libraries.

    A variable the user set in the environment is left as it is.
    """
    user_set = [var for var in NATIVE_THREAD_VARS if var in os.environ and os.environ[var] != str(count)]
    _set_defaults(count)
    # Libraries already loaded read the environment only at start-up; threadpoolctl resizes their pools.
    if not user_set and ("threadpoolctl" in sys.modules or "numpy" in sys.modules):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return
        threadpool_limits(count)


@contextlib.contextmanager
def native_thread_env(count: int | None) -> Iterator[None]:
    """Set native thread limits in the environment a child inherits at start (spawn, forkserver)."""
    if count is None:
        yield
        return
    saved = {var: os.environ.get(var) for var in NATIVE_THREAD_VARS}
    _set_defaults(count)
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
