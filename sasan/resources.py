"""Where the files SASAN ships are found: run presets (``configs/*.yaml``) and model files (``Models/``).

Three installations, searched in this order:

- beside the ``sasan`` package: a source checkout (``<repository>/Resources/<kind>``) and the Slicer
  extension, which installs the engine beside its scripted modules and their shared ``Resources/`` folder
  (``<qt-scripted-modules>/Resources/<kind>``);
- a Slicer module's folder, when given (``<module>/Resources/<kind>``, or its parent's for a module of
  the source tree), for an engine imported from elsewhere;
- an installed wheel (``pip install .``, not editable): ``<prefix>/share/sasan/<kind>`` of this
  interpreter's installation or of a ``pip install --user`` (``[tool.setuptools.data-files]`` in
  pyproject.toml).

Standard library only, and nothing else of the engine is imported: the Slicer modules list presets and
models before torch is installed.
"""
from __future__ import annotations

import os
import site
import sysconfig
from pathlib import Path
from typing import Optional, Union

PathLike = Union[str, Path]

CONFIGS, MODELS = "configs", "Models"
KINDS = (CONFIGS, MODELS)
ENGINE_ROOT = Path(__file__).resolve().parents[1]  # the folder holding the sasan package
INSTALLED_FOLDER = Path("share") / "sasan"
PRESET_SUFFIXES = (".yaml", ".yml")
DATA_FOLDER_KEYS = ("source", "target")  # data.<key>.root


def resource_folders(kind: str, module_dir: Optional[PathLike] = None) -> list[Path]:
    """The folders that may hold shipped files of ``kind`` ("configs" or "Models"), in search order,
    existing or not, each once."""
    if kind not in KINDS:
        raise ValueError(f"shipped files are {' or '.join(KINDS)}; not {kind!r}")
    roots = [ENGINE_ROOT]
    if module_dir is not None:
        roots += [Path(module_dir), Path(module_dir).parent]
    candidates = [root / "Resources" / kind for root in roots]
    # sysconfig.get_path("data") and site.getuserbase(), not get_preferred_scheme: that needs Python 3.10
    # and Slicer 5.6 runs 3.9.
    candidates += [Path(data) / INSTALLED_FOLDER / kind for data in (sysconfig.get_path("data"), site.getuserbase())]
    folders: list[Path] = []
    for folder in candidates:
        folder = folder.resolve()
        if folder not in folders:
            folders.append(folder)
    return folders


def model_folders(module_dir: Optional[PathLike] = None) -> list[Path]:
    """The existing folders of shipped model files, in search order."""
    return [folder for folder in resource_folders(MODELS, module_dir) if folder.is_dir()]


def find_presets(module_dir: Optional[PathLike] = None) -> list[Path]:
    """Every shipped preset (``*.yaml``, ``*.yml``), sorted by file name; the first folder wins a name."""
    presets: dict[str, Path] = {}
    for folder in resource_folders(CONFIGS, module_dir):
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.suffix.lower() in PRESET_SUFFIXES and path.is_file():
                presets.setdefault(path.name, path)
    return [presets[name] for name in sorted(presets)]


def preset_path(name: str, module_dir: Optional[PathLike] = None) -> Path:
    """The shipped preset ``name`` (e.g. ``"phantom_demo.yaml"``) from the first folder holding it."""
    return _shipped_file(CONFIGS, name, module_dir, "preset", "reinstall SASAN, or pass a configuration file")


def model_path(name: str, module_dir: Optional[PathLike] = None) -> Path:
    """The shipped model file ``name`` (e.g. ``"phantom_ct_mr.safetensors"``) from the first folder holding it."""
    return _shipped_file(MODELS, name, module_dir, "model file", "reinstall SASAN")


def _shipped_file(kind: str, name: str, module_dir: Optional[PathLike], what: str, remedy: str) -> Path:
    folders = resource_folders(kind, module_dir)
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{what} {name!r} not found; looked in " + ", ".join(str(f) for f in folders)
                            + f" ({remedy})")


def is_shipped_preset(path: PathLike) -> bool:
    """Whether ``path`` is one of the presets that come with SASAN (it lies in a preset folder)."""
    return Path(path).resolve().parent in resource_folders(CONFIGS)


def check_shipped_preset_data_folders(path: PathLike) -> None:
    """Refuse a shipped preset whose data folders are relative, naming the key.

    A relative ``data.source.root`` resolves against the folder a run starts in; started in the preset's
    own folder (as the Trainer module does, so that a user's configuration finds the data beside it),
    it would point inside the SASAN installation.  Presets are recipes: their data folders are set in
    a copy saved beside the data.  Reads the file with PyYAML.
    """
    import yaml

    if not is_shipped_preset(path):
        return
    data = (yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}).get("data") or {}
    for key in DATA_FOLDER_KEYS:
        root = (data.get(key) or {}).get("root")
        if root and not Path(root).is_absolute():
            raise ValueError(f"data.{key}.root: '{root}' is a relative folder, and '{Path(path).name}' is a preset "
                             "shipped with SASAN, whose folder lies inside the installation; save a copy of the "
                             "preset beside your data (or set an absolute folder) and choose that copy")


def cache_folder() -> Path:
    """Where SASAN keeps what it makes once and reuses (the phantom, this CPU's measured precision):
    ``$SASAN_CACHE``, default ``~/.cache/sasan``."""
    return Path(os.environ.get("SASAN_CACHE", "~/.cache/sasan")).expanduser()
