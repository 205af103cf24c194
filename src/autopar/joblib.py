"""autopar as a joblib backend: ``joblib.parallel_config(backend="autopar")`` lets autopar choose.

Importing this module registers the backend (``register()`` does it again, and
can make it joblib's default)::

    import autopar.joblib  # registers "autopar"
    from joblib import parallel_config
    from sklearn.model_selection import cross_val_score

    with parallel_config(backend="autopar"):
        scores = cross_val_score(model, X, y, cv=5, n_jobs=-1)

    print(autopar.joblib.last_decision())  # what autopar chose for that call, and why

Each ``Parallel`` call (scikit-learn's ``n_jobs=``, or your own) runs its first
batches in the caller, timed, and sends the rest where autopar's cost model says:
on in the caller, on threads or on autopar's process workers.  ``n_jobs`` is an
upper bound, ``prefer`` a hint, ``require="sharedmem"`` allows threads or serial
only.  joblib (``pip install 'autopar[joblib]'``) is needed here only:
``import autopar`` never imports it.
"""

from __future__ import annotations

from ._joblib_backend import AutoparBackend, last_decision

__all__ = ["BACKEND_NAME", "AutoparBackend", "last_decision", "register"]

#: The name the backend is registered under.
BACKEND_NAME = "autopar"


def register(*, make_default: bool = False) -> None:
    """Register the ``"autopar"`` joblib backend (done on import); ``make_default`` makes it joblib's default.

    Args:
        make_default: Use it for every ``Parallel`` call that names no backend, as
            ``joblib.register_parallel_backend(..., make_default=True)`` does.
    """
    from joblib import register_parallel_backend

    register_parallel_backend(BACKEND_NAME, AutoparBackend, make_default=make_default)


AutoparBackend.__module__ = "autopar.joblib"
register()
