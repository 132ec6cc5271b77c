"""Stopping a training run cleanly: between two steps, after a checkpoint, so that ``--resume`` continues it.

A stop is asked for with a ``STOP`` file in the run folder (``request_stop``; what the Trainer module
does: it reaches the engine through ``PythonSlicer``, a launcher that passes no signal on, and works on
Windows too) or with SIGTERM / SIGINT (``kill``, Ctrl-C) while ``StopRequest.on_signals`` is active; a
second signal interrupts at once.  Standard library only.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from pathlib import Path
from typing import Iterator, Union

from .run_folder import STOP_FILE

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingStopped(Exception):
    """The run stopped on request at ``step``, after writing a checkpoint."""

    def __init__(self, step: int) -> None:
        super().__init__(f"training stopped on request at step {step}; its checkpoint is written")
        self.step = step


def request_stop(run_dir: Union[str, Path]) -> Path:
    """Ask the ``sasan train`` running in ``run_dir`` to stop after its current step; returns the request file."""
    path = Path(run_dir) / STOP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


class StopRequest:
    """Whether the run in ``run_dir`` has been asked to stop: ``stop()`` is True once asked."""

    def __init__(self, run_dir: Union[str, Path]) -> None:
        self.file = Path(run_dir) / STOP_FILE
        self.signalled = False

    def __call__(self) -> bool:
        return self.signalled or self.file.exists()

    def clear(self) -> None:
        """Forget a request (the run has stopped, or finished): the next run of the folder starts afresh."""
        self.file.unlink(missing_ok=True)

    @contextlib.contextmanager
    def on_signals(self) -> Iterator["StopRequest"]:
        """Within the block, SIGTERM and SIGINT ask for a stop; a second one raises ``KeyboardInterrupt``.
        Outside the main thread (where Python handles no signals) the block changes nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handle(number: int, frame) -> None:
            if self.signalled:
                raise KeyboardInterrupt
            self.signalled = True
            log.warning("%s: stopping after this step with a checkpoint (send it again to stop at once)",
                        signal.Signals(number).name)

        previous = {number: signal.signal(number, handle) for number in STOP_SIGNALS}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, signal.SIG_DFL if handler is None else handler)  # None: not set from Python
