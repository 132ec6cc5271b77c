"""The server's side of a run: start ``sasan_web.job`` as a child process, follow it, cancel it.

Everything here is asynchronous on the server's event loop (no thread touches VTK or the scene): the
child's progress lines update the page while the user keeps scrolling slices.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Optional

from sasan.progress import parse_progress_line

from .job import PREFIX
from .lib import ensure_slicer_lib

logger = logging.getLogger(__name__)

CANCEL_GRACE_SECONDS = 20.0  # a cancelled child stops at its next batch; past this it is ended


class RunFailed(RuntimeError):
    """The run stopped with an error; the message is the library's, for the user."""


class RunCancelled(RuntimeError):
    """The user cancelled the run."""


class TranslationRun:
    """One child process translating one volume.  ``request`` is ``job.run``'s; ``folder`` holds its files."""

    def __init__(self, request: dict, folder: Path, progress: Callable[[float, str], None]) -> None:
        self.request = request
        self.folder = folder
        self.progress = progress
        self.process: Optional[asyncio.subprocess.Process] = None
        self.cancelled = False

    async def run(self) -> dict:
        """Run to the end; the job's manifest.  ``RunCancelled`` / ``RunFailed`` otherwise."""
        request_file = self.folder / "request.json"
        request_file.write_text(json.dumps(self.request), encoding="utf-8")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with (self.folder / "job.log").open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sasan_web.job", str(request_file), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=log, env=env, limit=1 << 22)
            outcome = await self._follow()
            await self.process.wait()
        if self.cancelled or outcome.get("cancelled"):
            raise RunCancelled("cancelled")
        if "done" in outcome:
            return outcome["done"]
        error = outcome.get("error") or f"the translation stopped unexpectedly (exit code {self.process.returncode})"
        raise RunFailed(error)

    async def _follow(self) -> dict:
        outcome: dict = {}
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").strip()
            report = parse_progress_line(line)
            if report is not None:
                self.progress(report.fraction, report.message)
            elif line.startswith(PREFIX):
                outcome = json.loads(line[len(PREFIX):])
        return outcome

    async def cancel(self) -> None:
        """Ask the child to stop between two batches; end it if it has not after ``CANCEL_GRACE_SECONDS``."""
        self.cancelled = True
        process = self.process
        if process is None or process.returncode is not None:
            return
        try:
            process.stdin.write(b"cancel\n")
            await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return
        try:
            await asyncio.wait_for(process.wait(), CANCEL_GRACE_SECONDS)
        except asyncio.TimeoutError:
            logger.warning("the translation did not stop within %.0f s; ending it", CANCEL_GRACE_SECONDS)
            ensure_slicer_lib()
            from SASANSlicerLib.processes import end_process_tree

            end_process_tree(process.pid)  # the job and the engine process it started
