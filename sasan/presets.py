"""Where the shipped run presets (``Resources/configs/*.yaml``) are found.

A source checkout reads them in place; an installed package (``pip install .``, not editable) carries a copy
under ``<prefix>/share/sasan/configs`` (``[tool.setuptools.data-files]`` in pyproject.toml), so ``sasan demo``
works from a wheel too.
"""
from __future__ import annotations

import sysconfig
from pathlib import Path

CHECKOUT_FOLDER = Path(__file__).resolve().parents[1] / "Resources" / "configs"
INSTALLED_SUBFOLDER = Path("share") / "sasan" / "configs"


def preset_folders() -> list[Path]:
    """Folders searched for presets, in order: the checkout's, then the install schemes' data folders."""
    folders = [CHECKOUT_FOLDER]
    for scheme in (sysconfig.get_default_scheme(), sysconfig.get_preferred_scheme("user")):
        folder = Path(sysconfig.get_path("data", scheme)) / INSTALLED_SUBFOLDER
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
