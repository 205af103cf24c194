"""autopar: run a function over many items in parallel, with the strategy chosen by measurement."""

from ._version import __version__

__all__ = ["__version__"]
