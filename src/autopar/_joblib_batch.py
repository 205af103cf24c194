"""What a worker runs for the joblib backend: one joblib batch, timed, and the imports a call will need.

Pickled by reference into process workers, so it is kept small and cheap to
import (standard library only), like ``_worker``.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ImportModules", "run_batch"]


def run_batch(batch: Callable[[], list[Any]]) -> tuple[list[Any], float, float]:
    """Run one joblib batch (a ``BatchedCalls``): its results, its wall seconds and its thread CPU seconds."""
    wall, cpu = time.perf_counter(), time.thread_time()
    results = batch()
    return results, time.perf_counter() - wall, time.thread_time() - cpu


class ImportModules:
    """A batch of no task that imports a call's modules in a worker before its first real batch arrives.

    A spawn or forkserver worker imports the modules of a batch's functions when it
    unpickles its first batch (a second for scikit-learn); a speculative pool runs
    this first, while the caller still runs batches itself.
    """

    def __init__(self, modules: tuple[str, ...]) -> None:
        self.modules = modules

    def __len__(self) -> int:
        return 0

    def __call__(self) -> list[Any]:
        for name in self.modules:
            # A module that fails here fails again, with its context, in the first batch that needs it.
            with contextlib.suppress(Exception):
                importlib.import_module(name)
        return []
