"""The built-in strategies (serial, threads, process pools, Dask), each imported on first use by ``_registry``.

Empty on purpose: process workers import their loop from a subpackage, which runs this file first.
"""
