"""Where the shipped run presets (``Resources/configs/*.yaml``) are found.

A source checkout reads them in place; an installed package (``pip install .``, not editable) carries a copy
under ``<prefix>/share/sasan/configs`` (``[tool.setuptools.data-files]`` in pyproject.toml), so ``sasan demo``
works from a wheel too.
"""
from __future__ import annotations

import site
import sysconfig
from pathlib import Path

CHECKOUT_FOLDER = Path(__file__).resolve().parents[1] / "Resources" / "configs"
INSTALLED_SUBFOLDER = Path("share") / "sasan" / "configs"


def preset_folders() -> list[Path]:
    """Folders searched for presets, in order: the checkout's, then the data folders of this interpreter's
    installation and of a ``pip install --user``."""
    folders = [CHECKOUT_FOLDER]
    # sysconfig.get_path("data") and site.getuserbase(), not get_preferred_scheme: that needs Python 3.10
    # and Slicer 5.6 runs 3.9.
    for data in (sysconfig.get_path("data"), site.getuserbase()):
        folder = Path(data) / INSTALLED_SUBFOLDER
        if folder not in folders:
            folders.append(folder)
    return folders


def preset_path(name: str) -> Path:
    """The first existing ``name`` (e.g. ``"phantom_demo.yaml"``) among :func:`preset_folders`."""
    folders = preset_folders()
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"preset {name!r} not found; looked in " + ", ".join(str(f) for f in folders)
                            + " (reinstall SASAN, or pass a configuration file)")
