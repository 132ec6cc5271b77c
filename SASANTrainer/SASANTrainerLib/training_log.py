"""Reading the training process's output as it arrives: lines for the log, progress for the bar.

The engine shows progress with tqdm bars (``training:  45%|####5     | 18/40 [00:10<00:12, ...]``),
which redraw with carriage returns, not new lines; logging lines end with new lines.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

_BAR = re.compile(r"^\s*(?P<phase>[^:|\r\n]*?):?\s*\d+%\|[^|]*\|\s*(?P<done>\d+)/(?P<total>\d+)\b")


@dataclass(frozen=True)
class Progress:
    """One progress report: ``done`` of ``total`` steps of a phase ("training", ...)."""

    phase: str
    done: int
    total: int

    @property
    def fraction(self) -> float:
        return min(self.done / self.total, 1.0) if self.total > 0 else 0.0


def parse_progress(line: str) -> Optional[Progress]:
    """The progress a tqdm bar line reports, or None for any other line."""
    match = _BAR.match(line)
    if match is None:
        return None
    return Progress(match.group("phase").strip() or "progress", int(match.group("done")), int(match.group("total")))


class OutputReader:
    """Splits a stream arriving in arbitrary chunks into complete lines (``\\n`` or ``\\r`` ended)."""

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, chunk: str) -> list[str]:
        """Complete lines in ``chunk`` (with what was pending before), without their line ends; empty
        lines dropped."""
        text = self._pending + chunk
        parts = re.split(r"\r\n|\r|\n", text)
        self._pending = parts.pop()
        return [part for part in parts if part.strip()]

    def flush(self) -> list[str]:
        """What is left once the stream has ended."""
        rest, self._pending = self._pending, ""
        return [rest] if rest.strip() else []
