"""A long job that survives bad items: ``errors="return"`` with ``retries=``.

With ``errors="return"`` a failing item does not end the call: its result is the
exception, and every other item still runs.  Here items 7 and 21 raise ValueError,
item 13 ends its worker process with ``os._exit`` every time, and item 42 ends its
worker the first time only.  ``retries=1`` runs an item whose worker died once more
(in a fresh worker), so item 42 succeeds and item 13 fails with WorkerCrashedError.
A process strategy is forced: only a worker process can die without taking the caller with it.
Run ``python examples/survive_bad_items.py``.
"""

from __future__ import annotations

import functools
import os
import tempfile

import autopar


def process(scratch: str, n: int) -> int:
    """n squared, except for the bad items; ``scratch`` records which items were already tried."""
    if n in (7, 21):
        msg = f"item {n} is malformed"
        raise ValueError(msg)
    if n == 13:
        os._exit(3)  # as a segfault or the out-of-memory killer would: the worker is gone
    if n == 42:
        marker = os.path.join(scratch, "42")
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(3)  # a transient crash: the retry succeeds
    return n * n


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        results = autopar.map(
            functools.partial(process, scratch),
            range(100),
            strategy="spawn",
            workers=2,
            errors="return",
            retries=1,
        )
    failures = {i: r for i, r in enumerate(results) if isinstance(r, BaseException)}
    print(f"{len(results)} items: {len(results) - len(failures)} succeeded, {len(failures)} failed")
    for index, error in sorted(failures.items()):
        print(f"item {index}: {type(error).__name__}: {error}")
    print(f"item 42 after its retry: {results[42]}")


if __name__ == "__main__":
    main()
