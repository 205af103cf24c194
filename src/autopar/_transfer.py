"""What sending items and results to a process worker costs, priced without copying big objects.

Calibration pickles a few items and results both ways and times it.  Objects
that say how big they are (``bytes``, ``bytearray``, ``memoryview``, NumPy
arrays of plain data, and short tuples, lists and dicts of them) are not
pickled: their size is read, and the time is priced at ``PICKLE_S_PER_BYTE``.
Any other object is pickled into a writer that stops at ``_MAX_PICKLED_BYTES``
(or priced at its ``least_size`` where that is already more), so calibration
never copies more than a few megabytes, however big the items.
"""

from __future__ import annotations

import io
import pickle
from typing import TYPE_CHECKING, Any

import attrs

from ._core._costs import PICKLE_S_PER_BYTE

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["PickleCost", "least_size", "measure_pickling", "pickles_within", "stated_size"]

#: Objects at least this big are priced from their stated size instead of being pickled.
_LARGE_BYTES = 64 * 1024
#: Most bytes calibration pickles of one object; a bigger one is priced from the bytes written so far.
_MAX_PICKLED_BYTES = 1024 * 1024
#: Most elements of a container whose size is added up from its elements.
_MAX_ELEMENTS = 64
#: Bytes of framing per object in a pickle, roughly.
_OVERHEAD_BYTES = 16


@attrs.frozen
class PickleCost:
    """What pickling a few items and results cost, per item."""

    func_bytes: int = 0
    item_bytes: float = 0.0
    result_bytes: float = 0.0
    #: Seconds per item to pickle and unpickle the item and its result.
    seconds: float = 0.0
    #: Items and results pickle at all.
    picklable: bool = True


def stated_size(obj: Any, depth: int = 2) -> int | None:
    """The pickled size ``obj`` states without being copied, or None when it does not say.

    Bytes-like objects and NumPy arrays of plain data state theirs; tuples, lists and
    dicts of at most ``_MAX_ELEMENTS`` such objects (two levels deep) add theirs up.
    """
    if isinstance(obj, (bytes, bytearray)):
        return len(obj) + _OVERHEAD_BYTES
    if isinstance(obj, memoryview):
        return obj.nbytes + _OVERHEAD_BYTES
    dtype = getattr(obj, "dtype", None)
    nbytes = getattr(obj, "nbytes", None)
    if isinstance(nbytes, int) and dtype is not None and not getattr(dtype, "hasobject", True):
        return nbytes + 8 * _OVERHEAD_BYTES  # the array's header: dtype, shape, order
    if depth > 0 and isinstance(obj, (tuple, list, dict)) and len(obj) <= _MAX_ELEMENTS:
        parts = [*obj.keys(), *obj.values()] if isinstance(obj, dict) else list(obj)
        sizes = [_small_or_stated(part, depth - 1) for part in parts]
        if None not in sizes:
            return sum(s for s in sizes if s is not None) + _OVERHEAD_BYTES
    return None


def least_size(obj: Any, depth: int = 2, seen: set[int] | None = None) -> int:
    """The fewest bytes ``obj`` can pickle to, read from lengths alone (0 when it has none).

    A byte per character of a string and per element of a container, whose first
    ``_MAX_ELEMENTS`` elements add theirs (two levels deep; an object met again adds
    nothing: the pickle refers back to it): a list of a million ints, or a long
    string, which ``stated_size`` leaves unsaid, is no small item.
    """
    seen = set() if seen is None else seen
    if id(obj) in seen or not isinstance(obj, (str, bytes, bytearray, tuple, list, dict, set, frozenset)):
        return 0
    seen.add(id(obj))
    size = len(obj)
    if depth > 0 and size <= _MAX_ELEMENTS and not isinstance(obj, (str, bytes, bytearray)):
        parts = [*obj.keys(), *obj.values()] if isinstance(obj, dict) else obj
        size += sum(least_size(part, depth - 1, seen) for part in parts)
    return size


def _small_or_stated(obj: Any, depth: int) -> int | None:
    """A scalar's few bytes, or what ``stated_size`` says."""
    if obj is None or isinstance(obj, (bool, int, float)):
        return _OVERHEAD_BYTES
    if isinstance(obj, str) and len(obj) <= _LARGE_BYTES:
        return len(obj) + _OVERHEAD_BYTES
    return stated_size(obj, depth)


class _Full(Exception):
    """The bounded buffer is full: the object pickles to at least ``size`` bytes."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class _BoundedBuffer(io.BytesIO):
    """A pickle's buffer that stops the pickler once more than ``limit`` bytes would be written."""

    def __init__(self, limit: int = _MAX_PICKLED_BYTES) -> None:
        super().__init__()
        self.limit = limit

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        if self.tell() + size > self.limit:
            raise _Full(self.tell() + size)
        return super().write(data)


def pickles_within(obj: Any, limit: int) -> bool:
    """Whether ``obj`` pickles to at most ``limit`` bytes; the pickler stops past them.

    True for what ``pickle`` cannot pickle: the pool's own encoder (cloudpickle) has the last word.
    """
    try:
        pickle.Pickler(_BoundedBuffer(limit), protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    except _Full:
        return False
    except Exception:
        return True
    return True


def _priced(obj: Any, clock: Callable[[], float]) -> tuple[int, float]:
    """(pickled bytes, seconds both ways) of ``obj``: stated when big, else pickled and unpickled once.

    Raises:
        Exception: whatever pickling raises for an object that does not pickle.
    """
    stated = _small_or_stated(obj, 2)
    if stated is None and (least := least_size(obj)) >= _MAX_PICKLED_BYTES:
        stated = least  # pickling it would stop at the bound: priced as the least it can be, with no copy
    if stated is not None and stated >= _LARGE_BYTES:
        return stated, stated * PICKLE_S_PER_BYTE
    buffer = _BoundedBuffer()
    t0 = clock()
    try:
        pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    except _Full as full:
        # Big and silent about its size: at least this big; priced at the bytes it would write so far.
        return full.size, full.size * PICKLE_S_PER_BYTE
    # Small: timed as the pool pays it, pickled and unpickled once.
    pickle.loads(buffer.getbuffer())
    return buffer.tell(), clock() - t0


def measure_pickling(
    func: Callable[..., Any], items: list[Any], outputs: list[Any], clock: Callable[[], float]
) -> PickleCost:
    """Price sending each (item, result) pair both ways, copying at most a few MB; time it with ``clock``."""
    try:
        func_bytes = len(pickle.dumps(func))
    except Exception:
        func_bytes = 0  # shipping() records why: the function goes by value or is inherited by fork workers
    item_bytes = result_bytes = 0
    seconds: list[float] = []
    pairs = list(zip(items, outputs, strict=False))
    for item, out in pairs:
        try:
            a, a_s = _priced(item, clock)
            b, b_s = _priced(out, clock)
        except Exception:
            return PickleCost(func_bytes=func_bytes, picklable=False)
        item_bytes += a
        result_bytes += b
        seconds.append(a_s + b_s)
    n = max(len(pairs), 1)
    return PickleCost(
        func_bytes=func_bytes,
        item_bytes=item_bytes / n,
        result_bytes=result_bytes / n,
        # The median: the first pickling in a process pays one-time costs the pool will not.
        seconds=_median(seconds),
    )


def _median(values: list[float]) -> float:
    """The median of ``values`` (0.0 for none); ``statistics`` would cost a first call ~3 ms to import."""
    if not values:
        return 0.0
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
