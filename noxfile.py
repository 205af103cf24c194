"""The test suite on every supported CPython (the interpreters come from pyenv when present)."""

from __future__ import annotations

import os
from pathlib import Path

import nox

# pyenv installs each interpreter under ~/.pyenv/versions/X.Y.Z/bin; put them on PATH for nox.
_PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
if _PYENV.is_dir():
    _bins = sorted(str(p / "bin") for p in _PYENV.iterdir() if (p / "bin").is_dir())
    os.environ["PATH"] = os.pathsep.join([*_bins, os.environ.get("PATH", "")])

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True


@nox.session(python=["3.10", "3.11", "3.12", "3.13"])
def tests(session: nox.Session) -> None:
    """Install autopar with its test extra and run pytest.

    With ``AUTOPAR_RERUN_FAILED`` set (CI), a test that failed runs once more, alone, and decides
    the outcome; the first failure stays in the log.  pytest's cache then lives in the session's
    own directory, never in the checkout.
    """
    session.install("-e", ".[test]")
    if not os.environ.get("AUTOPAR_RERUN_FAILED"):
        session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *session.posargs)
        return
    cache = f"cache_dir={Path(session.create_tmp()) / 'pytest-cache'}"
    try:
        session.run("python", "-m", "pytest", "-o", cache, *session.posargs)
    except nox.command.CommandFailed:
        session.log("rerunning the tests that failed, once")
        session.run(
            "python", "-m", "pytest", "-o", cache, "--last-failed", "--last-failed-no-failures=none", *session.posargs
        )
