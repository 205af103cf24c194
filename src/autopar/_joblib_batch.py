"""What a worker runs for the joblib backend: one joblib batch, timed.

Pickled by reference into process workers, so it is kept small and cheap to
import (standard library only), like ``_worker``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["run_batch"]


def run_batch(batch: Callable[[], list[Any]]) -> tuple[list[Any], float, float]:
    """Run one joblib batch (a ``BatchedCalls``): its results, its wall seconds and its thread CPU seconds."""
    wall, cpu = time.perf_counter(), time.thread_time()
    results = batch()
    return results, time.perf_counter() - wall, time.thread_time() - cpu
