"""The built-in strategies (serial, threads, process pools, Dask), each imported on first use by ``_registry``.

Imports nothing, so importing one strategy module costs only that module.
"""
