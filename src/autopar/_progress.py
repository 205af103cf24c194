"""``progress=``: a tqdm bar (extra ``autopar[progress]``) or the user's own ``(done, total)`` callable."""

from __future__ import annotations

from typing import Any

__all__ = ["Progress", "make_progress"]


class Progress:
    """Reports ``(done, total)`` to a callable, or advances a tqdm bar; ``close`` ends the bar."""

    def __init__(self, report: Any, bar: Any = None) -> None:
        self._report = report
        self._bar = bar

    def __call__(self, done: int, total: int | None) -> None:
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            if total is not None and done >= total:
                self.close()
        else:
            self._report(done, total)

    def close(self) -> None:
        """Close the bar, if any (also when the call failed)."""
        if self._bar is not None:
            self._bar.close()


def make_progress(progress: Any, total: int | None) -> Progress | None:
    """A progress reporter for ``progress=``: None, False, True (tqdm) or a callable ``(done, total)``.

    Raises:
        ImportError: ``progress=True`` without tqdm installed; the message names the extra.
        TypeError: anything else.
    """
    if progress is None or progress is False:
        return None
    if progress is True:
        try:
            from tqdm.auto import tqdm
        except ImportError as exc:
            msg = "progress=True needs tqdm: pip install 'autopar[progress]'"
            raise ImportError(msg) from exc

        class _Bar(tqdm):  # type: ignore[misc]
            # tqdm's monitor thread would make the process multi-threaded, and fork unsafe.
            monitor_interval = 0

        return Progress(None, _Bar(total=total))
    if callable(progress):
        return Progress(progress)
    msg = f"progress must be True, False, None or a callable (done, total), not {progress!r}"
    raise TypeError(msg)
