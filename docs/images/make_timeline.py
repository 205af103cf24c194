"""Draw ``docs/images/timeline.png`` (the picture in ``docs/report.md``) from a real run.

Usage::

    python docs/images/make_timeline.py

A first call under auto over 600 items of about 2 ms of pure Python each: the
caller calibrates, then a process pool runs the rest.  Item 400 is slow (60 ms),
and the first attempt at item 300 ends its worker with ``os._exit``, so the
picture shows a failed chunk and the item running again (``retries=1``).
The report is printed, and the timeline written next to this script.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import autopar

ITEMS = 600
SLOW, CRASH = 400, 300
_CALLER = os.getpid()


def work(arg: tuple[str, int]) -> int:
    """About 2 ms of pure Python; item 400 takes 60 ms; the first attempt at item 300 ends its worker."""
    marker, x = arg
    if x == CRASH and os.getpid() != _CALLER and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    until = time.perf_counter() + (0.06 if x == SLOW else 0.002)
    total = 0
    while time.perf_counter() < until:
        total += 1
    return x


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        marker = os.path.join(scratch, "crashed-once")
        autopar.map(work, [(marker, x) for x in range(ITEMS)], retries=1, report=True)
    report = autopar.last_report()
    assert report is not None
    print(report)
    report.plot(Path(__file__).with_name("timeline.png"))


if __name__ == "__main__":
    main()
