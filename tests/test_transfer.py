"""Pricing what items and results cost to send to a process worker, without copying big ones."""

from __future__ import annotations

import itertools
import pickle
from typing import Any

import pytest

from autopar._core._costs import PICKLE_S_PER_BYTE
from autopar._transfer import _median, least_size, measure_pickling, pickles_within, stated_size

MB = 1024 * 1024


class CountingBytes(bytes):
    """Bytes that count how often they are pickled."""

    reduced = 0

    def __reduce__(self) -> Any:
        type(self).reduced += 1
        return bytes, (bytes(self),)


class Opaque:
    """An object that does not state its size but pickles to ``size`` bytes."""

    def __init__(self, size: int) -> None:
        self.payload = bytes(size)


class _DType:
    def __init__(self, hasobject: bool) -> None:
        self.hasobject = hasobject


class ArrayLike:
    """What ``stated_size`` reads of a NumPy array (importing NumPy here would start BLAS threads and rule out fork)."""

    def __init__(self, nbytes: int, *, hasobject: bool = False) -> None:
        self.nbytes = nbytes
        self.dtype = _DType(hasobject)

    def __reduce__(self) -> Any:
        return ArrayLike, (self.nbytes,)


def _clock() -> Any:
    ticks = itertools.count()
    return lambda: next(ticks) * 1e-3


@pytest.mark.parametrize(
    ("obj", "low", "high"),
    [
        (bytes(10 * MB), 10 * MB, 10 * MB + 64),
        (bytearray(3 * MB), 3 * MB, 3 * MB + 64),
        (memoryview(bytes(2 * MB)), 2 * MB, 2 * MB + 64),
        (ArrayLike(8_000_000), 8_000_000, 8_000_000 + 256),
        ((bytes(MB), 3, "label"), MB, MB + 128),
        ({"a": ArrayLike(4000), "b": 1.5}, 4000, 4200),
    ],
)
def test_stated_size_reads_the_size_without_pickling(obj: Any, low: int, high: int) -> None:
    """Bytes-like objects, plain arrays and small containers of them state their pickled size."""
    size = stated_size(obj)
    assert size is not None
    assert low <= size <= high


@pytest.mark.parametrize("obj", [Opaque(10), ArrayLike(80, hasobject=True), [object()], list(range(1000)), "x" * (MB)])
def test_stated_size_is_none_for_objects_that_do_not_say(obj: Any) -> None:
    """Arbitrary objects, object arrays, long containers and huge strings do not state a size."""
    assert stated_size(obj) is None


def test_big_arguments_are_priced_without_a_copy() -> None:
    """20 MB arguments are priced from their size at PICKLE_S_PER_BYTE: none of them is pickled."""
    CountingBytes.reduced = 0
    items = [CountingBytes(bytes(20 * MB)) for _ in range(3)]
    cost = measure_pickling(len, items, [bytes(MB)] * 3, _clock())
    assert CountingBytes.reduced == 0
    assert 20 * MB <= cost.item_bytes <= 20 * MB + 64
    assert cost.seconds == pytest.approx((cost.item_bytes + cost.result_bytes) * PICKLE_S_PER_BYTE, rel=0.01)
    assert cost.picklable


def test_an_opaque_big_object_is_not_round_tripped() -> None:
    """An object that hides its size is priced from what the pickler wrote, with no unpickling and no clock."""
    cost = measure_pickling(len, [Opaque(50 * MB)], [bytes(MB)], _clock())
    assert cost.item_bytes >= 50 * MB
    assert cost.seconds == pytest.approx((cost.item_bytes + cost.result_bytes) * PICKLE_S_PER_BYTE, rel=0.01)
    assert cost.picklable


def test_small_items_are_pickled_both_ways_and_timed_with_the_clock() -> None:
    """Small items are really pickled and unpickled, timed by the injected clock."""
    cost = measure_pickling(len, [(1, 2), (3, 4)], [2, 2], _clock())
    assert 0 < cost.item_bytes < 100
    assert cost.seconds == pytest.approx(2e-3)  # two reads of the clock per object, 1 ms apart


def test_unpicklable_data_is_reported() -> None:
    """An item that cannot be pickled marks the data as unpicklable."""
    cost = measure_pickling(len, [lambda: 1], [1], _clock())
    assert not cost.picklable


@pytest.mark.parametrize(
    ("values", "expected"), [([], 0.0), ([5.0], 5.0), ([3.0, 1.0, 2.0], 2.0), ([4.0, 1.0, 3.0, 2.0], 2.5)]
)
def test_the_pickling_time_is_the_median_of_the_items(values: list[float], expected: float) -> None:
    """The price is the middle item's time (the mean of the two middle ones for an even count), as statistics says."""
    assert _median(values) == expected


@pytest.mark.parametrize(
    ("obj", "low", "high"),
    [
        (list(range(1_000_000)), 1_000_000, 1_000_000),
        ("x" * MB, MB, MB),
        ((list(range(100_000)), 3), 100_001, 100_003),
        ({"rows": [0] * 70_000}, 70_001, 70_010),
        ({1, 2, 3}, 3, 3),
        ([list(range(100_000))] * 10, 100_010, 100_010),  # one list, referred to ten times
        (Opaque(10 * MB), 0, 0),
        (3.5, 0, 0),
    ],
)
def test_least_size_is_a_lower_bound_read_from_lengths(obj: Any, low: int, high: int) -> None:
    """A byte per character or element (the first elements of small containers add theirs): below the pickled size."""
    size = least_size(obj)
    assert low <= size <= high
    assert size <= len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


@pytest.mark.parametrize(
    ("obj", "fits"),
    [(Opaque(10 * MB), False), (Opaque(1000), True), (list(range(100)), True), (lambda: 1, True)],
)
def test_pickles_within_stops_past_the_limit(obj: Any, fits: bool) -> None:
    """Within 64 KB or not, read by pickling into a buffer that stops past it; what pickle refuses is not judged."""
    assert pickles_within(obj, 64 * 1024) is fits


def test_a_container_whose_length_passes_the_bound_is_priced_without_pickling() -> None:
    """A list of two million elements states no size: priced at a byte per element, with none of them pickled."""
    CountingBytes.reduced = 0
    items = [[CountingBytes(b"x")] * 2_000_000]
    cost = measure_pickling(len, items, [1], _clock())
    assert CountingBytes.reduced == 0
    assert cost.item_bytes >= 2_000_000
