"""Fork workers whose failed start closes its descriptors.

CPython's ``popen_fork.Popen._launch`` (3.10 to 3.13) opens two pipes and then
forks; when the second pipe or the fork fails (``EMFILE`` under a low
``RLIMIT_NOFILE``, ``EAGAIN`` under a low ``RLIMIT_NPROC``) the descriptors
already opened are never closed, so every failed start leaks up to four and
repeated calls walk the process into ``EMFILE``.  ``ClosingForkProcess`` is
the fork ``Process`` with the same launch, closing them on failure (loky
carries its own ``Popen`` classes for the same kind of reason).
"""

from __future__ import annotations

import os
from multiprocessing import popen_fork, util
from multiprocessing.context import ForkProcess
from typing import Any

__all__ = ["ClosingForkProcess"]


def _close(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


class _ClosingPopen(popen_fork.Popen):
    """``popen_fork.Popen`` that closes its pipes when the fork fails."""

    def _launch(self, process_obj: Any) -> None:
        code = 1
        parent_r, child_w = os.pipe()
        try:
            child_r, parent_w = os.pipe()
        except BaseException:
            _close(parent_r, child_w)
            raise
        try:
            self.pid = os.fork()
        except BaseException:
            _close(parent_r, child_w, child_r, parent_w)
            raise
        if self.pid == 0:
            try:
                _close(parent_r, parent_w)
                code = process_obj._bootstrap(parent_sentinel=child_r)
            finally:
                os._exit(code)
        else:
            _close(child_w, child_r)
            self.finalizer = util.Finalize(self, _close, (parent_r, parent_w))
            self.sentinel = parent_r


class ClosingForkProcess(ForkProcess):
    """A fork ``Process`` whose failed start leaks no descriptor."""

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _ClosingPopen(process_obj)
