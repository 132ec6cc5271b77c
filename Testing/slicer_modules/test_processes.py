"""Ending a process tree: a launcher (as PythonSlicer is) and the worker it started both end, by pid."""
import subprocess
import sys
import textwrap
import time

import pytest

from SASANSlicerLib.processes import end_process_tree

psutil = pytest.importorskip("psutil")

# A stand-in for PythonSlicer: starts its argument as a child, prints the child's pid, waits for it.
LAUNCHER = textwrap.dedent('''
    import subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1], *sys.argv[2:]])
    print(child.pid, flush=True)
    sys.exit(child.wait())
''')
# A worker that, like a training run asked to stop, does not end on SIGTERM; with an argument it is
# itself a launcher of one more worker (a grandchild of the first launcher).
WORKER = textwrap.dedent('''
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if len(sys.argv) > 1:
        child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
        print(child.pid, flush=True)
    while True:
        time.sleep(0.1)
''')


def gone(pid: int) -> bool:
    """Ended: no such process, or a zombie waiting for a parent that is not ours to reap it."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def start_tree(*arguments):
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, *arguments], stdout=subprocess.PIPE, text=True)
    pids = [launcher.pid]
    while len(pids) < 1 + len(arguments):  # each level prints the pid of the one it started
        pids.append(int(launcher.stdout.readline()))
    return launcher, pids


def test_the_launcher_its_worker_and_the_workers_child_all_end(tmp_path):
    launcher, pids = start_tree(WORKER, WORKER)
    try:
        time.sleep(0.3)  # every worker has set its SIGTERM handler
        assert [psutil.pid_exists(pid) for pid in pids] == [True, True, True]
        started = time.monotonic()
        assert sorted(end_process_tree(launcher.pid, timeout=1.0)) == sorted(pids)
        launcher.wait(timeout=10)
        assert all(gone(pid) for pid in pids), [(pid, gone(pid)) for pid in pids]
        assert time.monotonic() - started < 10  # SIGTERM ignored: killed after the timeout
    finally:
        for pid in pids:
            if not gone(pid):
                psutil.Process(pid).kill()


def test_a_process_that_has_ended_is_no_error():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert end_process_tree(process.pid) == []
