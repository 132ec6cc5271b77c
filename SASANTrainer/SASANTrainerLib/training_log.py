"""Reading the training process's output as it arrives: complete lines, for the log or as progress.

The engine prints its progress as ``SASAN-PROGRESS {...}`` lines (``sasan.progress``); logging lines
end with new lines too; a stream may also hold carriage returns (a bar redrawn in place).
"""
from __future__ import annotations

import re


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
