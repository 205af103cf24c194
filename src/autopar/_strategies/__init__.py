"""The built-in strategies (serial, threads, process pools); the registry itself lives in ``_registry``."""

from __future__ import annotations

from .._registry import get_strategy, is_registered, register_strategy, strategy_names

__all__ = ["get_strategy", "is_registered", "register_strategy", "strategy_names"]
