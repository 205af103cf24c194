"""The first item's watcher's rules: when the carry starts while that item runs, and what its looks say of the GIL.

A thread of the caller (``_carry_watch``) looks at the first item about every
millisecond: its thread's CPU time so far, and how late the watcher got the GIL
back.  These rules read those numbers; they only decide.
"""

from __future__ import annotations

from ._sampling import CARRY_MAX_WORK_S
from ._sizing import MAX_THREADS

__all__ = [
    "EARLY_CARRY_AFTER_S",
    "EARLY_CARRY_BUSY_SHARE",
    "EARLY_CARRY_LATE_S",
    "EARLY_CARRY_PROMPT_LOOKS",
    "early_carry",
    "early_look_ran",
    "early_park",
    "gil_seen",
]

#: The carry starts while the first item still runs once that item has run at least this long, ...
EARLY_CARRY_AFTER_S = 0.002
#: ... on the CPU at most this share of that time (it blocked the rest), and then ran on, the watching
#: thread getting the GIL within ``EARLY_CARRY_LATE_S`` at ``EARLY_CARRY_PROMPT_LOOKS`` looks in a row,
#: about a millisecond apart (bytecode holds the GIL until a switch is forced, 5 ms by default; a single
#: prompt look may be a write after a few milliseconds of bytecode): C code that released the GIL, which
#: threads run in parallel.  40 items that sleep 20 ms, then hash 16 MB in C, left one CPU idle and
#: every other item's wait unstarted for the first item's 30 ms.
EARLY_CARRY_BUSY_SHARE = 0.5
EARLY_CARRY_LATE_S = 0.002
EARLY_CARRY_PROMPT_LOOKS = 2


def early_park(wall_s: float, cpu_s: float) -> bool:
    """The first item has blocked so far (``wall_s`` and its thread's ``cpu_s``): the carry's threads start, waiting.

    They cost about 0.3 ms each to start, on a CPU the item leaves idle; ``early_carry`` then releases them
    at once, or they end untaken.
    """
    return wall_s >= EARLY_CARRY_AFTER_S and cpu_s <= EARLY_CARRY_BUSY_SHARE * wall_s


def early_look_ran(cpu_s: float, interval_s: float) -> bool:
    """The first item ran through a look of the watcher: on a CPU ``cpu_s`` of the ``interval_s`` since the last one.

    At least ``EARLY_CARRY_BUSY_SHARE`` of it: only then does the look test the GIL.  A few milliseconds of
    bytecode followed by a write or a wait would otherwise pass two looks, the first at the burst's end.
    """
    return cpu_s >= EARLY_CARRY_BUSY_SHARE * interval_s


def gil_seen(late_s: float | None, prompt_before: int) -> bool | None:
    """What a look of the watcher tells of the first item's GIL: None, not yet (``late_s`` None: the item did not run).

    False once late; True at ``EARLY_CARRY_PROMPT_LOOKS`` prompt looks in a row: C code that releases the GIL.
    """
    if late_s is None or late_s >= EARLY_CARRY_LATE_S:
        return None if late_s is None else False
    return True if prompt_before + 1 >= EARLY_CARRY_PROMPT_LOOKS else None


def early_carry(
    wall_s: float, cpu_s: float, late_s: float | None, remaining: int | None, prompt_before: int = 0
) -> int | None:
    """Threads to start the carry with while the first item still runs (``carry_plan`` before the item ends).

    ``wall_s`` and ``cpu_s``: the item's time so far and its thread's CPU time; ``late_s``: how late the
    watcher got the GIL at its last look (None: the item did not run through it, ``early_look_ran``, so it
    was not tested); ``prompt_before``: the looks just before it at which the item had run, and the GIL came
    promptly; ``remaining``: the items after it.  Returns the thread count to start now, 0 to look again,
    None to stop watching: the item computes from its start, held the GIL at a look (Python bytecode,
    which threads cannot overlap), or the rest is more than a carry takes.
    """
    if remaining is None or remaining < 2 or remaining * wall_s > CARRY_MAX_WORK_S:
        return None
    if wall_s < EARLY_CARRY_AFTER_S:
        return 0
    if cpu_s > EARLY_CARRY_BUSY_SHARE * wall_s:
        return None
    released = gil_seen(late_s, prompt_before)
    if released is None:
        return 0
    return min(remaining, MAX_THREADS) if released else None
