"""Where ``/dev/shm`` is too small, read-only or missing: ``shared=`` is pickled instead (never SIGBUS), and auto runs without processes.

Each test runs a child interpreter in a mount namespace of its own
(``unshare -m``, or ``unshare -rm`` without root) with a 1 MB tmpfs on
``/dev/shm``, as a small container has (or a read-only or missing one), and
is skipped where the machine allows neither.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

import helpers
from autopar._shared import pool_shm_problem

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(120)

_SCRIPT = """
import logging, os, sys
import autopar
from autopar._shared import SharedHandle

logging.basicConfig(level=logging.INFO, stream=sys.stderr)

def size_plus(x, shared):
    return len(shared) + x

if __name__ == "__main__":
    mode, strategy, kind = sys.argv[1], sys.argv[2], sys.argv[3]
    if kind == "numpy":
        import numpy
        data = numpy.zeros(8 * 1024 * 1024, dtype=numpy.uint8)
    else:
        data = bytes(8 * 1024 * 1024)
    if mode == "call":
        print(autopar.map(size_plus, range(4), strategy=strategy, workers=2, shared=data))
    else:
        # The free space check is pointed at a roomy directory, so only the reservation can tell.
        handle = SharedHandle(data, shm_dir=sys.argv[4])
        print(handle.payload() is data)
        handle.close()
    print(os.listdir("/dev/shm"))
"""


def _in_small_shm(tmp_path: Path, args: list[str], mount_options: str = "size=1m") -> subprocess.CompletedProcess[str]:
    """Run the script with ``args`` in a mount namespace whose /dev/shm is a tmpfs mounted with ``mount_options``."""
    script = tmp_path / "shared_in_small_shm.py"
    script.write_text(_SCRIPT)
    return _in_namespace(tmp_path, f"mount -t tmpfs -o {mount_options} tmpfs /dev/shm", [str(script), *args])


def _in_namespace(tmp_path: Path, mount: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run Python with ``args`` in a mount namespace of its own, after the shell command ``mount`` there."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare (util-linux) to mount a small /dev/shm")
    namespace = [unshare, "-m", "--propagation", "private"] if os.geteuid() == 0 else [unshare, "-rm"]
    probe = subprocess.run([*namespace, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "/dev/shm"], check=False)
    if probe.returncode != 0:
        pytest.skip("this machine allows no mount namespace with its own /dev/shm (unshare -m, unshare -rm)")
    env = {**os.environ, "PYTHONPATH": helpers.SRC}
    env.pop("AUTOPAR_STRATEGY", None)
    return subprocess.run(
        [*namespace, "sh", "-c", f'{mount} && exec "$0" "$@"', sys.executable, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


@pytest.mark.parametrize(("strategy", "kind"), [("spawn", "bytes"), ("forkserver", "bytes"), ("spawn", "numpy")])
def test_shared_larger_than_free_dev_shm_is_pickled_instead(tmp_path: Path, strategy: str, kind: str) -> None:
    """8 MB shared through a 1 MB /dev/shm: right results, a log line, no segment left (it was SIGBUS)."""
    # Not imported here: its native threads would make fork unsafe for the tests that follow.
    if kind == "numpy" and importlib.util.find_spec("numpy") is None:
        pytest.skip("needs numpy")
    done = _in_small_shm(tmp_path, ["call", strategy, kind])
    assert done.returncode == 0, done.stderr
    size = 8 * 1024 * 1024
    assert done.stdout.splitlines() == [str([size + x for x in range(4)]), "[]"]
    assert "is pickled to each worker instead of shared memory: /dev/shm has" in done.stderr


def test_shared_segment_that_cannot_be_reserved_is_unlinked(tmp_path: Path) -> None:
    """When posix_fallocate finds no room, the segment is unlinked and the object itself is the payload."""
    if not hasattr(os, "posix_fallocate"):
        pytest.skip("no posix_fallocate on this platform")
    done = _in_small_shm(tmp_path, ["handle", "spawn", "bytes", str(tmp_path)])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["True", "[]"]
    assert "could not be reserved" in done.stderr


def test_shared_with_read_only_dev_shm_is_pickled_instead(tmp_path: Path) -> None:
    """A read-only /dev/shm: the segment cannot be made, so the object itself is the payload, logged."""
    done = _in_small_shm(tmp_path, ["handle", "spawn", "bytes", str(tmp_path)], mount_options="ro,size=1m")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["True", "[]"]
    assert "a shared-memory segment could not be created" in done.stderr


def test_pool_shm_problem_reads_the_directory(tmp_path: Path) -> None:
    """A writable directory has no problem; a missing one is named with the reason."""
    if not sys.platform.startswith("linux"):
        pytest.skip("multiprocessing uses /dev/shm on Linux only")
    assert pool_shm_problem(str(tmp_path)) is None
    missing = tmp_path / "missing"
    assert pool_shm_problem(str(missing)) == f"{missing} cannot be used ('No such file or directory')"


_WHOLE_CALL = """
import logging, sys
import psutil
import autopar

def spin(x):
    return sum(i * i for i in range(200_000)) + x

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="log %(message)s")
    for strategy in ("fork", "forkserver", "spawn"):
        try:
            autopar.map(spin, range(4), strategy=strategy, workers=2)
        except autopar.WorkerStartError as exc:
            print("forced", strategy, exc)
    print("auto", autopar.map(spin, range(24)) == [spin(x) for x in range(24)])
    print("explain", autopar.explain(spin, range(24)).reasons)
    print("children", len(psutil.Process().children()))
"""


@pytest.mark.parametrize(
    ("mount", "problem"),
    [
        ("mount -t tmpfs -o ro,size=1m tmpfs /dev/shm", "/dev/shm is mounted read-only"),
        ("umount /dev/shm && mount -t tmpfs -o ro,size=1m tmpfs /dev", "/dev/shm cannot be used"),
    ],
    ids=["read-only", "missing"],
)
def test_whole_call_without_usable_dev_shm(tmp_path: Path, mount: str, problem: str) -> None:
    """No usable /dev/shm: forced process strategies name it, auto runs the call right and says why."""
    script = tmp_path / "no_shm.py"
    script.write_text(_WHOLE_CALL)
    done = _in_namespace(tmp_path, mount, [str(script)])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    forced = [line for line in lines if line.startswith("forced")]
    assert len(forced) == 3, done.stdout
    assert all("cannot start worker processes here" in line and problem in line for line in forced), forced
    assert "auto True" in lines
    assert any(line.startswith("explain") and problem in line for line in lines), done.stdout
    assert "children 0" in lines
    assert "could not start" not in done.stderr  # auto knew before trying
    info = _in_namespace(tmp_path, mount, ["-m", "autopar", "info"])
    assert info.returncode == 0, info.stderr
    assert "auto process methods  none" in info.stdout
    assert problem in info.stdout
