"""Fixtures of the web tests: a ``sasan web`` server on a free port (with its own Xvfb), and headless Chromium.

Playwright drives the system's Chromium (Debian's ``chromium``), never a browser it downloads.  Without
trame-slicer, Playwright, Chromium or Xvfb these tests are skipped, unless ``SASAN_WEB_TESTS_REQUIRED=1``
(set by Testing/run_tests.sh, which installs them): then a missing piece fails the run.
"""
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for folder in (ROOT / "Testing" / "slicer_modules", ROOT / "Testing" / "web"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
READY = "SASAN web is ready: open "
START_SECONDS = 120


def _missing() -> list[str]:
    import importlib.util

    missing = [name for name in ("trame_slicer", "playwright", "slicer") if importlib.util.find_spec(name) is None]
    missing += [tool for tool in ("chromium", "Xvfb") if shutil.which(tool) is None]
    return missing


def require_web_stack() -> None:
    missing = _missing()
    if not missing:
        return
    reason = f"the web tests need {', '.join(missing)} (pip install -e '.[webtest]'; apt-get install chromium xvfb)"
    if os.environ.get("SASAN_WEB_TESTS_REQUIRED") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class WebServer:
    """A ``sasan web`` process; ``url`` carries its token."""

    def __init__(self, process: subprocess.Popen, url: str, log: list[str]) -> None:
        self.process, self.url, self.log = process, url, log

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def wait_for_port(port: int, deadline: float, process: subprocess.Popen) -> bool:
    """True once 127.0.0.1:``port`` accepts a connection; False if ``process`` ends or ``deadline`` passes."""
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as probe:
            probe.settimeout(1.0)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False


def start_server(folders: dict, extra_args=(), env_overrides=None) -> WebServer:
    """Start ``sasan web`` on a free port with ``folders`` (data, models, cache) and wait for its address."""
    env = {key: value for key, value in os.environ.items() if key != "DISPLAY"}  # it starts its own Xvfb
    env.update({"SASAN_CACHE": str(folders["cache"]), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2",
                "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])})
    env.update(env_overrides or {})
    port = free_port()
    command = [sys.executable, "-m", "sasan.cli", "web", "--port", str(port), "--data", str(folders["data"]),
               "--models", str(folders["models"]), *extra_args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               cwd=ROOT)
    lines: "queue.Queue[str]" = queue.Queue()
    log: list[str] = []

    def read() -> None:
        for line in process.stdout:
            log.append(line)
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        if line.startswith(READY):  # printed just before the server binds: wait until it accepts connections
            url = line[len(READY):].strip()
            if wait_for_port(port, deadline, process):
                return WebServer(process, url, log)
            break
    process.kill()
    raise RuntimeError("sasan web did not start:\n" + "".join(log[-40:]))


def write_small_volume(path: Path) -> Path:
    """A 24 x 20 x 8 CT-like volume (a bright block in air): a data file or an upload that is not the phantom."""
    import numpy as np
    import SimpleITK as sitk

    array = np.full((8, 20, 24), -1000, np.int16)
    array[2:6, 5:15, 6:18] = 40
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.5, 3.0))
    sitk.WriteImage(image, str(path), True)
    return path


@pytest.fixture(scope="session")
def web_folders(tmp_path_factory):
    """The server's folders: data (one phantom volume), models (tiny and slow), and its sample cache."""
    require_web_stack()
    from models import write_slow_model, write_tiny_model

    base = tmp_path_factory.mktemp("web")
    folders = {name: base / name for name in ("data", "models", "cache", "uploads")}
    for folder in folders.values():
        folder.mkdir()
    write_small_volume(folders["data"] / "small_ct.nrrd")
    write_tiny_model(folders["models"] / "tiny.safetensors")
    write_slow_model(folders["models"] / "slow.safetensors")
    return folders


@pytest.fixture(scope="session")
def browser():
    require_web_stack()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
