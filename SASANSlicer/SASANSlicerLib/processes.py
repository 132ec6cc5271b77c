"""The engine's commands as child processes of Slicer: which Python runs them, with what environment, and
ending one together with every process it started.

Slicer's ``PythonSlicer`` is a launcher: it starts the real Python as its own child, so ending the launcher
alone leaves the work running.  Qt-free; psutil (one of the module's packages) is imported when called.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Mapping

END_TIMEOUT_S = 3.0


def python_executable() -> str:
    """Slicer's command-line Python (``PythonSlicer``, on the PATH inside Slicer), else this Python."""
    return shutil.which("PythonSlicer") or sys.executable


def engine_environment(engine_root: Path, inherited: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The variables a ``python -u -m sasan ...`` child needs on top of the inherited ones: ``engine_root`` (the
    folder holding the ``sasan`` package) first on ``PYTHONPATH``, and unbuffered output, so that its log and
    progress lines arrive as they are written."""
    python_path = os.pathsep.join(p for p in (str(Path(engine_root).resolve()), inherited.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"}


def end_process_tree(pid: int, timeout: float = END_TIMEOUT_S) -> list[int]:
    """End process ``pid`` and all its descendants: ask each to terminate, then kill those still running
    after ``timeout`` seconds.  Returns the pids found (none when ``pid`` has already ended)."""
    import psutil

    try:
        root = psutil.Process(pid)
        # Found before anything ends: an orphaned child is no longer anybody's descendant.
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=timeout)
    return [process.pid for process in processes]
