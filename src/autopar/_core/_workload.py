"""What kind of work a function does, read from measurements: every classification threshold lives here.

Calibration reports raw clocks (wall, thread CPU, process CPU, voluntary
context switches); these functions turn them into the few properties the rest
of the core reasons about: does the function compute under the GIL, wait, or
already run native threads on several cores?  Calibration's probe plan, the
cost model and ``Executor.submit``'s rule all read the same thresholds.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from .._model import Measurements, PlatformFacts, SerialSample

__all__ = [
    "ASSUMED_ITEMS_UNKNOWN",
    "CLEARLY_WAITING_CPU_SHARE",
    "COMPUTING_CPU_SHARE",
    "MEMORY_SHARE",
    "MIN_CPU_SHARE",
    "MIN_ITEM_PEAK_BYTES",
    "MIN_WAITS_PER_ITEM",
    "NATIVE_CORES_RATIO",
    "NO_MEMORY_LIMIT",
    "SKEW_RATIO",
    "WAITING_CPU_SHARE",
    "Workload",
    "clean",
    "is_clearly_waiting",
    "is_computing",
    "memory_workers",
    "probe_reading",
    "probe_speedup",
    "waits_part",
    "workload",
]

#: Items assumed to remain when the input has no length (a generator): streams are usually long,
#: and 10,000 items of any measurable cost make every pool's start-up worth paying.
ASSUMED_ITEMS_UNKNOWN = 10_000
#: Process CPU over wall above which native threads (BLAS, OpenMP) already use several cores.
#: One core reads 1.0 plus interpreter noise (GC, the import system); 1.3 leaves room for that.
NATIVE_CORES_RATIO = 1.3
#: Thread CPU over wall below which the function counts as waiting (I/O, sleeps, locks):
#: past half of its time off the CPU, more threads than cores pay.
WAITING_CPU_SHARE = 0.5
#: Thread CPU over wall at or above which work counts as computing when no context-switch count
#: is available (outside Linux): the rest is timer noise and preemption, not waiting.
COMPUTING_CPU_SHARE = 0.8
#: Thread CPU over wall at or below which waiting is unambiguous: a thread probe cannot change
#: the choice (threads), so it is skipped.
CLEARLY_WAITING_CPU_SHARE = 0.1
#: Voluntary context switches per item below which the function never blocks (it computes):
#: a thread that waits switches at least once per wait.
MIN_WAITS_PER_ITEM = 0.5
#: Slowest item over mean beyond which items count as skewed (smaller chunks then balance better).
SKEW_RATIO = 4.0
#: Smallest CPU share the model divides by (a function that only sleeps).
MIN_CPU_SHARE = 0.01
#: ``Workload.max_in_flight`` when memory sets no limit.
NO_MEMORY_LIMIT = 2**31
#: Peak memory growth of the serial sample below which items need no memory limit: allocator noise.
MIN_ITEM_PEAK_BYTES = 64 * 2**20
#: Share of the available memory that the items running at once (on threads or processes) may hold.
MEMORY_SHARE = 0.5


@attrs.frozen
class Workload:
    """The measurements reduced to what the cost model needs."""

    remaining: int
    item_s: float
    item_max_s: float
    cpu_share: float
    #: Cores the function already uses through native threads (1.0 when it uses one).
    cores_used: float
    thread_p: float
    cpu_count: int
    #: Each item blocks part of its time (it waits more than it computes, or it waits measurably
    #: while computing less than ``COMPUTING_CPU_SHARE``): workers beyond the CPUs overlap the waits.
    blocks: bool = False
    #: Most items the available memory holds at once, on threads or processes (``memory_workers``).
    max_in_flight: int = NO_MEMORY_LIMIT

    @property
    def native(self) -> bool:
        return self.cores_used > 1.0

    @property
    def waiting(self) -> bool:
        return not self.native and self.cpu_share < WAITING_CPU_SHARE

    @property
    def skew(self) -> float:
        """Slowest item over mean (1 when unknown)."""
        return self.item_max_s / self.item_s if self.item_s else 1.0

    @property
    def skewed(self) -> bool:
        return self.skew > SKEW_RATIO

    @property
    def process_item_s(self) -> float:
        """Per-item time in a process worker, whose native thread pools run one thread."""
        return self.item_s * self.cores_used


def clean(value: float) -> float:
    """A finite, non-negative number (calibration noise never makes the model raise)."""
    return value if math.isfinite(value) and value > 0 else 0.0


def probe_reading(m: Measurements) -> tuple[int, float] | None:
    """The thread probe's (workers, speedup), or None when there was no usable probe."""
    s = m.thread_speedup
    if m.thread_probe_workers >= 2 and s is not None and math.isfinite(s) and s > 0:
        # k threads cannot run more than k times as fast: a higher reading is timing noise.
        return m.thread_probe_workers, min(s, float(m.thread_probe_workers))
    return None


def _thread_fraction(m: Measurements, platform: PlatformFacts, share: float, waiting: bool) -> float:
    # Waiting releases the GIL; the computing part still holds it (unless the build has no GIL).
    # ``waiting``: the item blocks part of its time (``Workload.blocks``).
    floor = 1.0 if not platform.gil_enabled else (1.0 - share if waiting else 0.0)
    probe = probe_reading(m)
    if probe is not None:
        k, s = probe
        # Computing threads beyond the CPU count add no parallelism, so the probe ran at most that many.
        k = k if waiting else min(k, max(platform.cpu_count, 1))
        if k >= 2:
            fitted = min(max((1 - 1 / s) / (1 - 1 / k), 0.0), 1.0)
            # A short probe on a busy machine can under-read waiting work, never over-read it.
            return max(fitted, floor) if waiting else fitted
    return floor


def workload(m: Measurements, platform: PlatformFacts) -> Workload:
    """Reduce measurements to the workload the cost model prices."""
    wall = clean(m.item_wall_s)
    # Time queued behind other processes for a CPU is the machine's load, not the item waiting.
    ran = max(wall - clean(m.item_queued_s or 0.0), clean(m.item_cpu_s))
    share = min(clean(m.item_cpu_s) / ran, 1.0) if ran else 1.0
    if m.item_waits is not None and m.item_waits < MIN_WAITS_PER_ITEM:
        # The thread never blocked: the CPU it lacked went to other processes, not to waiting.
        share = 1.0
    ratio = clean(m.item_process_cpu_s) / wall if wall else 0.0
    cores = ratio if ratio > NATIVE_CORES_RATIO else 1.0
    remaining = ASSUMED_ITEMS_UNKNOWN if m.n_items is None else max(m.n_items - max(m.sampled, 0), 0)
    waited = m.item_waits is not None and m.item_waits >= MIN_WAITS_PER_ITEM
    blocks = ratio <= NATIVE_CORES_RATIO and (share < WAITING_CPU_SHARE or (waited and share < COMPUTING_CPU_SHARE))
    return Workload(
        remaining=remaining,
        item_s=wall,
        item_max_s=max(clean(m.item_wall_max_s), wall),
        cpu_share=share,
        cores_used=cores,
        thread_p=_thread_fraction(m, platform, share, blocks),
        cpu_count=max(platform.cpu_count, 1),
        blocks=blocks,
        max_in_flight=memory_workers(m, platform),
    )


def memory_workers(m: Measurements, platform: PlatformFacts) -> int:
    """Most workers (threads or processes) whose items fit in ``MEMORY_SHARE`` of the available memory at once.

    The serial sample's peak memory growth is what one item holds; never below the CPU
    count (what a plain ``multiprocessing.Pool()`` runs), and no limit when either is unknown.
    """
    peak, free = m.peak_growth_bytes, platform.memory_available_bytes
    if peak < MIN_ITEM_PEAK_BYTES or free <= 0:
        return NO_MEMORY_LIMIT
    return max(platform.cpu_count, 1, int(free * MEMORY_SHARE // peak))


def _native(sample: SerialSample) -> bool:
    return sample.process_s > NATIVE_CORES_RATIO * sample.wall_s


def is_computing(sample: SerialSample) -> bool:
    """The sample computed in its thread: no native threads, and no blocking waits or CPU near the time it ran.

    The time it ran is its wall time less the time it queued for a CPU behind other
    processes, where known: a loaded machine does not make computing work look waiting.
    """
    if sample.wall_s <= 0 or _native(sample):
        return False
    if sample.waits is not None and sample.waits < MIN_WAITS_PER_ITEM * max(sample.count, 1):
        return True
    if sample.waits is not None and sample.queued_s is None:
        return False
    return sample.cpu_s >= COMPUTING_CPU_SHARE * max(sample.wall_s - (sample.queued_s or 0.0), sample.cpu_s)


def is_clearly_waiting(sample: SerialSample) -> bool:
    """The sample mostly waited (thread CPU at most a tenth of wall, no native threads): threads scale it.

    The cost model then takes the waiting share as parallel whatever a probe reads,
    so a probe would only delay the run by an item's wait or more.
    """
    if sample.wall_s <= 0 or _native(sample):
        return False
    blocked = sample.waits is None or sample.waits >= MIN_WAITS_PER_ITEM * max(sample.count, 1)
    return blocked and sample.cpu_s <= CLEARLY_WAITING_CPU_SHARE * sample.wall_s


def waits_part(sample: SerialSample) -> bool:
    """The sample blocked part of its time and computed in its thread the rest: neither computing nor clearly waiting."""
    blocked = sample.waits is not None and sample.waits >= MIN_WAITS_PER_ITEM * max(sample.count, 1)
    return blocked and not _native(sample) and not is_computing(sample) and not is_clearly_waiting(sample)


def probe_speedup(sample: SerialSample, wall_s: float, items: int, cpu_s: float) -> float | None:
    """The thread probe's speedup over the serial sample's rate (None for a probe that took no time).

    For computing work the threads' summed CPU over the probe's wall time is
    the parallelism they reached; it does not lean on the serial sample's
    per-item time, which a busy machine can inflate.
    """
    if wall_s <= 0:
        return None
    speedup = items * sample.per_item_s / wall_s
    if is_computing(sample):
        speedup = max(speedup, cpu_s / wall_s)
    return speedup
