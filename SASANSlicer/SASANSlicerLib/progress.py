"""Progress and cancellation of a long run, between the engine's batches and the GUI."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:  # the engine is not importable while Slicer starts
    from sasan.progress import Progress


class RunCancelled(Exception):
    """The user cancelled the run (raised between batches; nothing of the run is kept)."""


class CancelToken:
    """A cancel flag the GUI sets and the run checks between batches.

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


def raise_if_cancelled(cancel: Callable[[], bool]) -> None:
    """Raise ``RunCancelled`` if ``cancel()`` says the run should stop."""
    if cancel():
        raise RunCancelled("cancelled by the user")


def progress_callback(
    report: Progress,
    cancel: Callable[[], bool],
    pump: Optional[Callable[[], None]] = None,
) -> Progress:
    """The ``progress(fraction, message="")`` callback to hand the engine (called between batches).

    Each call reports (``report(fraction, message)``, fraction clipped to 0..1), lets the GUI process its
    events (``pump``, e.g. ``slicer.app.processEvents``: this is where a click on Cancel arrives), then
    raises ``RunCancelled`` if ``cancel()`` (a ``CancelToken`` or any callable) says stop, which stops the
    engine between two batches even if it never looks at the flag itself.
    """

    def callback(fraction: float, message: str = "") -> None:
        report(min(max(float(fraction), 0.0), 1.0), message)
        if pump is not None:
            pump()
        raise_if_cancelled(cancel)

    return callback


def progress_text(fraction: float, message: str = "") -> str:
    """``"Translating: 15% (slice 12 of 80)"``: the status line for a progress report."""
    text = f"Translating: {round(100 * fraction)}%"
    return f"{text} ({message})" if message else text
