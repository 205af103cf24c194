"""The rows of ``autopar info`` that describe the machine and the interpreter (``platform_report``)."""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING

from ._core import _safety

if TYPE_CHECKING:
    from ._model import MethodVerdict, PlatformFacts

__all__ = ["platform_report"]

_GiB = 1024**3


def _verdict_text(verdict: MethodVerdict) -> str:
    if not verdict.available:
        return f"not available: {verdict.reason}"
    return f"available, {'safe' if verdict.safe else 'unsafe'}: {verdict.reason}"


def _memory_text(facts: PlatformFacts) -> str:
    total, available = facts.memory_total_bytes / _GiB, facts.memory_available_bytes / _GiB
    return f"{total:.1f} GiB total, {available:.1f} GiB available" if total else "not probed"


def platform_report(facts: PlatformFacts) -> list[tuple[str, str]]:
    """Rows of (label, value) describing ``facts``, for ``autopar info``."""
    major, minor = facts.python_version
    build = "GIL enabled" if facts.gil_enabled else "free-threaded, GIL disabled"
    auto = _safety.auto_process_methods(facts)
    physical = "unknown" if facts.cpu_physical is None else str(facts.cpu_physical)
    rows = [
        ("OS", f"{facts.system} ({platform.platform()})"),
        ("Python", f"{platform.python_implementation()} {major}.{minor}, {build}"),
        ("start methods", f"{', '.join(facts.start_methods) or 'none'} (default: {facts.default_start_method})"),
    ]
    rows.extend((verdict.method, _verdict_text(verdict)) for verdict in _safety.method_verdicts(facts))
    rows += [
        ("auto process methods", ", ".join(auto) if auto else "none (auto uses serial or threads)"),
        ("CPUs", f"{facts.cpu_logical} logical, {physical} physical, {facts.cpu_count} usable"),
        ("threads", f"{facts.python_threads} Python, {facts.native_threads} native"),
        ("memory", _memory_text(facts)),
        ("__main__", "importable file" if facts.main_importable else "not a file (REPL, python -c or notebook)"),
        ("cloudpickle", "installed" if facts.cloudpickle_available else "not installed (pip install cloudpickle)"),
    ]
    return rows
