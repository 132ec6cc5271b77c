"""Ending a child process together with every process it started.

Slicer's ``PythonSlicer`` is a launcher: it starts the real Python as its own child, so ending the launcher
alone leaves the work running.  Qt-free; psutil (one of the module's packages) is imported when called.
"""
from __future__ import annotations

import contextlib

END_TIMEOUT_S = 3.0


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
