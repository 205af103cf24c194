"""``shared=``: one read-only object passed to every call, sent to each worker at most once.

Threads, serial runs and fork workers see the object itself (fork workers
inherit it).  spawn and forkserver workers receive it once, with their
start-up; ``bytes`` and NumPy arrays go through ``multiprocessing.shared_memory``
instead, so workers map one copy rather than each unpickling their own.  The
segment is unlinked when the call ends, whatever way it ends.

Writing a segment larger than the free space of ``/dev/shm`` (64 MB in a
default Docker container) would kill the caller with SIGBUS, so the space is
checked and reserved before the first byte is written; when it does not fit,
or ``/dev/shm`` is read-only or absent, the object is pickled to each worker
instead, with a log line saying so.

Both halves live here: the caller's ``SharedHandle``, and the worker's
``install_shared``, ``SharedMemoryRef`` and ``CallWithShared``, which find the
object by key in ``shared_objects``.  Process workers import this module, so it
imports the standard library only at module level (shared memory and NumPy
inside the functions that need them).
"""

from __future__ import annotations

import itertools
import mmap
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["CallWithShared", "SharedHandle", "SharedMemoryRef", "install_shared", "pool_shm_problem", "shared_objects"]

#: Objects passed to every call with ``shared=``, by key: set in the caller (threads, serial,
#: and fork workers that inherit it) or installed by a spawned worker at start-up.
shared_objects: dict[int, Any] = {}
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

    def __init__(self, obj: Any, shm_dir: str = "/dev/shm") -> None:
        self.obj = obj
        #: Where POSIX shared memory lives on Linux, for the free space check.
        self.shm_dir = shm_dir
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
            if segment is None:
                return self.obj
            segment.buf[: len(self.obj)] = self.obj
            return SharedMemoryRef(segment.name, len(self.obj), "bytes")
        if array is not None and array.nbytes >= _SHM_MIN_BYTES:
            import numpy

            segment = self._create(array.nbytes)
            if segment is None:
                return self.obj
            copy = numpy.ndarray(array.shape, dtype=array.dtype, buffer=segment.buf)
            copy[...] = array
            del copy  # a live view would keep the segment from closing
            return SharedMemoryRef(segment.name, int(array.nbytes), "numpy", array.dtype.str, tuple(array.shape))
        return self.obj

    def _create(self, size: int) -> Any:
        """A segment of ``size`` bytes whose space is reserved, or None (logged) when it cannot have one."""
        from multiprocessing import shared_memory

        problem = _free_space_problem(self.shm_dir, size)
        if problem is None:
            try:
                self._segment = shared_memory.SharedMemory(create=True, size=max(size, 1))
            except OSError as exc:  # /dev/shm read-only or absent, or no descriptor left
                problem = f"a shared-memory segment could not be created: {exc}"
            else:
                problem = _reserve(self._segment, size)
        if problem is None:
            return self._segment
        self.close_segment()
        import logging

        logging.getLogger("autopar").info(
            "autopar: shared= object of %d bytes is pickled to each worker instead of shared memory: %s", size, problem
        )
        return None

    def close(self) -> None:
        """Forget the object and unlink its segment (workers that mapped it keep their mapping)."""
        shared_objects.pop(self.key, None)
        self.close_segment()

    def close_segment(self) -> None:
        """Unlink the segment, if one was made."""
        segment, self._segment = self._segment, None
        if segment is not None:
            segment.close()
            segment.unlink()


def pool_shm_problem(shm_dir: str = "/dev/shm") -> str | None:
    """Why ``multiprocessing`` cannot make the values its pools share with workers here, or None when it can.

    On Linux it puts them in a file under ``/dev/shm`` whenever ``/dev/shm``
    reports a page free (in the temporary directory only when it does not), so
    a missing or read-only ``/dev/shm`` fails every process pool's start.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        stat = os.statvfs(shm_dir)
    except OSError as exc:
        return f"{shm_dir} cannot be used ({exc.strerror or exc!r})"
    if stat.f_bavail * stat.f_frsize < mmap.PAGESIZE:
        return None
    if stat.f_flag & os.ST_RDONLY:
        return f"{shm_dir} is mounted read-only"
    if not os.access(shm_dir, os.W_OK):
        return f"{shm_dir} is not writable by this user"
    return None


def _free_space_problem(shm_dir: str, size: int) -> str | None:
    """Why ``shm_dir`` has no room for ``size`` bytes, or None (also when it cannot be asked)."""
    try:
        stats = os.statvfs(shm_dir)
    except OSError:
        return None  # not Linux's /dev/shm: creating the segment tells
    free = stats.f_bavail * stats.f_frsize
    if free < size:
        return f"{shm_dir} has {free} bytes free"
    return None


def _reserve(segment: Any, size: int) -> str | None:
    """Allocate the segment's pages now, so writing it cannot SIGBUS; why that failed, or None."""
    fallocate = getattr(os, "posix_fallocate", None)
    fd = getattr(segment, "_fd", -1)  # the standard library keeps it open on POSIX
    if fallocate is None or fd < 0:
        return None  # no way to reserve here (macOS, Windows): the free space check stands
    try:
        fallocate(fd, 0, max(size, 1))
    except OSError as exc:
        return f"its {size} bytes could not be reserved: {exc}"
    return None


# -- the worker half ------------------------------------------------------------


class SharedMemoryRef:
    """Names a ``multiprocessing.shared_memory`` segment holding bytes or a NumPy array."""

    def __init__(self, name: str, size: int, kind: str, dtype: str = "", shape: tuple[int, ...] = ()) -> None:
        self.name = name
        self.size = size
        self.kind = kind
        self.dtype = dtype
        self.shape = shape

    def attach(self) -> Any:
        """Map the segment and return a read-only view: a memoryview for bytes, an ndarray for NumPy."""
        from multiprocessing import shared_memory

        # Workers report to the caller's resource tracker, which already tracks the segment;
        # the caller unlinks it when the call ends.
        if sys.version_info >= (3, 13):
            segment = shared_memory.SharedMemory(name=self.name, track=False)
        else:
            segment = shared_memory.SharedMemory(name=self.name)
        _segments.append(segment)  # keep the mapping alive as long as the worker
        buf = segment.buf
        assert buf is not None
        view = buf[: self.size]
        if self.kind == "numpy":
            import numpy

            array = numpy.ndarray(self.shape, dtype=numpy.dtype(self.dtype), buffer=view)
            array.flags.writeable = False
            return array
        return view.toreadonly()


_segments: list[Any] = []


def install_shared(key: int, payload: Any) -> None:
    """Make ``payload`` (or the segment it names) the shared object for ``key`` in this worker."""
    shared_objects[key] = payload.attach() if isinstance(payload, SharedMemoryRef) else payload


class CallWithShared:
    """``func(item, shared)``: a picklable callable that finds the shared object in the worker by key."""

    def __init__(self, func: Callable[[Any, Any], Any], key: int) -> None:
        self.func = func
        self.key = key
        self.__qualname__ = getattr(func, "__qualname__", "CallWithShared")
        self.__module__ = getattr(func, "__module__", __name__)

    def __call__(self, item: Any) -> Any:
        return self.func(item, shared_objects[self.key])

    def __reduce__(self) -> tuple[Any, ...]:
        return CallWithShared, (self.func, self.key)
