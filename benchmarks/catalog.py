"""A named workload (a function of one item and the builder of its items), and finding one by name.

Shared by ``workloads.py`` and ``cold_shapes.py``; it imports nothing heavy, so a
worker that imports either pays only for its own functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["Workload", "find"]


@dataclass(frozen=True)
class Workload:
    """A named function with the builder of its items."""

    name: str
    func: Callable[[Any], Any]
    build: Callable[[float], list[Any]]
    description: str


def find(name: str, workloads: Iterable[Workload]) -> Workload:
    """The workload of ``workloads`` called ``name``.

    Raises:
        KeyError: none has that name.
    """
    known = list(workloads)
    for workload in known:
        if workload.name == name:
            return workload
    msg = f"no workload named {name!r}; known: {', '.join(w.name for w in known)}"
    raise KeyError(msg)
