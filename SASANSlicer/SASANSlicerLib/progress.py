"""Progress and cancellation of a translation run, between its process and the GUI or a script."""
from __future__ import annotations

import threading
from typing import Callable, Optional


class RunCancelled(Exception):
    """The user cancelled the run (its process is ended; nothing of the run is kept)."""


class CancelToken:
    """A cancel flag a caller sets and the run checks between progress reports.

    It answers both ways engines ask: as a ``threading.Event`` (``is_set()``) and as a callable
    returning True once cancelled.
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def __call__(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise RunCancelled("cancelled by the user")


def as_cancel_check(cancel: Optional[Callable[[], bool]]) -> Callable[[], bool]:
    """``cancel`` as a function returning True once the run should stop (a ``CancelToken`` is one);
    None: never.  Raises ``TypeError`` for anything that cannot be called."""
    if cancel is None:
        return lambda: False
    if not callable(cancel):
        raise TypeError(f"cancel must be a callable returning True to stop, or a CancelToken; got {cancel!r}")
    return cancel


def progress_text(fraction: float, message: str = "") -> str:
    """``"Translating: 15% (slice 12 of 80)"``: the status line for a progress report."""
    text = f"Translating: {round(100 * fraction)}%"
    return f"{text} ({message})" if message else text
