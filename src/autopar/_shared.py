"""``shared=``: one read-only object passed to every call, sent to each worker at most once.

Threads, serial runs and fork workers see the object itself (fork workers
inherit it).  spawn and forkserver workers receive it once, with their
start-up; ``bytes`` and NumPy arrays go through ``multiprocessing.shared_memory``
instead, so workers map one copy rather than each unpickling their own.  The
segment is unlinked when the call ends, whatever way it ends.
"""

from __future__ import annotations

import itertools
import sys
from typing import Any

from ._worker import SharedMemoryRef, shared_objects

__all__ = ["SharedHandle"]

_keys = itertools.count(1)
#: Objects smaller than this are pickled to each worker rather than placed in shared memory.
_SHM_MIN_BYTES = 64 * 1024


def _numpy_array(obj: Any) -> Any:
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(obj, numpy.ndarray) and obj.dtype != object:
        return obj
    return None


class SharedHandle:
    """The shared object of one call: its key, and the shared-memory segment once one is made."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self.key = next(_keys)
        self._segment: Any = None
        self._payload: Any = None
        shared_objects[self.key] = obj

    def size_bytes(self) -> int:
        """The object's size in bytes where cheap to know (bytes, arrays), else 0; never pickles it."""
        if isinstance(self.obj, (bytes, bytearray, memoryview)):
            return len(self.obj)
        array = _numpy_array(self.obj)
        return int(array.nbytes) if array is not None else 0

    def payload(self) -> Any:
        """What a spawn or forkserver worker receives: a shared-memory reference, or the object."""
        if self._payload is None:
            self._payload = self._make_payload()
        return self._payload

    def _make_payload(self) -> Any:
        array = _numpy_array(self.obj)
        if isinstance(self.obj, (bytes, bytearray)) and len(self.obj) >= _SHM_MIN_BYTES:
            segment = self._create(len(self.obj))
            segment.buf[: len(self.obj)] = self.obj
            return SharedMemoryRef(segment.name, len(self.obj), "bytes")
        if array is not None and array.nbytes >= _SHM_MIN_BYTES:
            import numpy

            segment = self._create(array.nbytes)
            copy = numpy.ndarray(array.shape, dtype=array.dtype, buffer=segment.buf)
            copy[...] = array
            del copy  # a live view would keep the segment from closing
            return SharedMemoryRef(segment.name, int(array.nbytes), "numpy", array.dtype.str, tuple(array.shape))
        return self.obj

    def _create(self, size: int) -> Any:
        from multiprocessing import shared_memory

        self._segment = shared_memory.SharedMemory(create=True, size=max(size, 1))
        return self._segment

    def close(self) -> None:
        """Forget the object and unlink its segment (workers that mapped it keep their mapping)."""
        shared_objects.pop(self.key, None)
        segment, self._segment = self._segment, None
        if segment is not None:
            segment.close()
            segment.unlink()
