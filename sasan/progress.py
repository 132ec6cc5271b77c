"""Progress of a long run: the one callback type, and the line a child process prints for its parent.

``Progress`` is a callable ``progress(fraction, message)``: ``fraction`` from 0 to 1, non-decreasing,
ending at 1.0; ``message`` a few words for a status line ("step 18 of 40", "slice 12 of 80").

A child process (``sasan train --progress-lines``, ``sasan translate --progress-lines``, as the Slicer
modules start them) reports each step as one line of its standard output::

    SASAN-PROGRESS {"fraction": 0.42, "message": "step 420 of 1000"}

the prefix at the start of the line, then a JSON object (ASCII only, so any console encoding carries it).
Everything else on the output (logging, warnings) belongs in the reader's log: ``parse_progress_line``
returns None for it, and for a damaged or incomplete progress line.  Standard library only.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import Callable, Optional, TextIO

PROGRESS_PREFIX = "SASAN-PROGRESS"

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ProgressReport:
    """One progress line, read back: ``fraction`` in [0, 1] and the message."""

    fraction: float
    message: str = ""


def format_progress_line(fraction: float, message: str = "") -> str:
    """The progress line (without its line end) for ``fraction`` (clipped to [0, 1]) and ``message``."""
    fraction = float(fraction)
    if not math.isfinite(fraction):
        raise ValueError(f"a progress fraction must be a finite number; got {fraction}")
    payload = {"fraction": round(min(max(fraction, 0.0), 1.0), 6), "message": str(message)}
    return f"{PROGRESS_PREFIX} {json.dumps(payload)}"


def parse_progress_line(line: str) -> Optional[ProgressReport]:
    """The report of a progress line, or None for any other line (or a damaged one)."""
    text = line.strip()
    if not text.startswith(PROGRESS_PREFIX + " "):
        return None
    try:
        payload = json.loads(text[len(PROGRESS_PREFIX):])
    except ValueError:  # a cut or garbled line: skipped, the next one comes soon
        return None
    if not isinstance(payload, dict):
        return None
    fraction, message = payload.get("fraction"), payload.get("message", "")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not math.isfinite(fraction):
        return None
    if not isinstance(message, str):
        return None
    return ProgressReport(min(max(float(fraction), 0.0), 1.0), message)


def progress_line_printer(stream: Optional[TextIO] = None) -> Progress:
    """A ``Progress`` that prints progress lines on ``stream`` (default: standard output), each flushed at
    once so that a reading parent sees it live."""

    def report(fraction: float, message: str = "") -> None:
        out = stream if stream is not None else sys.stdout
        out.write(format_progress_line(fraction, message) + "\n")
        out.flush()

    return report
