"""``sasan web``: start the SASAN web app on one port, for one user at a time.

Safe by default: it binds to 127.0.0.1 (reach it from another machine through an SSH tunnel), and every
connection must present the token printed at start (the ``secret`` in the printed address), also on
localhost, where other users of a shared GPU server could otherwise connect.  The page reads only uploads,
the ``--data`` and ``--models`` folders and the shipped models.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)

TOKEN_ENVIRONMENT = "SASAN_WEB_TOKEN"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _folder(path: Optional[str], option: str) -> Optional[Path]:
    if path is None:
        return None
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise NotADirectoryError(f"{option} {path}: no such folder")
    return folder.resolve()


def _start_virtual_display() -> Optional[subprocess.Popen]:
    """Slicer's views render with OpenGL into an X display: without one (a headless server) start Xvfb,
    if it is installed, for this server's lifetime."""
    if os.environ.get("DISPLAY") or sys.platform != "linux":
        return None
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise RuntimeError("no X display to render the slice views: install Xvfb (apt-get install xvfb) or run "
                           "'xvfb-run -a sasan web ...'")
    read, write = os.pipe()
    process = subprocess.Popen([xvfb, "-displayfd", str(write), "-screen", "0", "1920x1080x24", "-nolisten", "tcp"],
                               pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as handle:
        display = handle.readline().strip()
    if not display:
        process.kill()
        raise RuntimeError("Xvfb did not start; run 'xvfb-run -a sasan web ...' instead")
    os.environ["DISPLAY"] = f":{display}"
    return process


def serve(host: str = "127.0.0.1", port: int = 8080, data: Optional[str] = None, models: Optional[str] = None,
          token: Optional[str] = None, max_upload_mb: float = 1024) -> int:
    """Run the server until interrupted; prints the address to open (with its token) first."""
    data_dir, models_dir = _folder(data, "--data"), _folder(models, "--models")
    if max_upload_mb <= 0:
        raise ValueError("--max-upload-mb must be positive")
    token = token or os.environ.get(TOKEN_ENVIRONMENT) or secrets.token_urlsafe(24)
    for noisy in ("trame_client", "trame_server", "wslink", "aiohttp.access"):  # one line per widget otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    display = _start_virtual_display()
    try:
        from trame.app import get_server

        from .app import SASANWebApp

        server = get_server("sasan-web", client_type="vue3")
        options = ["--host", host, "--port", str(port), "--authKey", token, "--server", "--timeout", "0"]
        parser = server.cli
        parser.parse_known_args = lambda args=None, namespace=None: type(parser).parse_known_args(
            parser, list(options), namespace)  # ours, not sasan's own command line
        SASANWebApp(server, data_dir=data_dir, models_dir=models_dir, max_upload_bytes=int(max_upload_mb * 1e6))
        shown = f"[{host}]" if ":" in host else host
        print(f"SASAN web is ready: open http://{shown}:{port}/?secret={token}", flush=True)
        if not _is_loopback(host):
            print(f"Listening on {host}: anyone who can reach this address and has the token can use this "
                  "server. Prefer the default 127.0.0.1 with an SSH tunnel (see the README).", flush=True)
        server.start(host=host, port=port, open_browser=False, show_connection_info=False, timeout=0)
    finally:
        if display is not None:
            display.terminate()
    return 0
