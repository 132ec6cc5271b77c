"""What the module needs from Slicer's Python: the ``sasan`` engine on ``sys.path`` and some pip packages.

Standard library only: this runs before anything else of the engine can be imported.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import re
import sys
from pathlib import Path
from typing import Callable

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class EngineNotFoundError(ImportError):
    """The ``sasan`` package is neither importable nor beside the module."""


class PyTorchMissingError(ImportError):
    """``torch`` is not installed in this Python."""


def engine_roots(module_dir: Path) -> list[Path]:
    """Folders that may hold the ``sasan`` package: the module's own (installed extension: the package is
    installed beside the scripted modules) and its parent (source tree: ``SASANSlicer/`` beside ``sasan/``)."""
    return [module_dir, module_dir.parent]


def ensure_engine_importable(module_dir: Path, package: str = "sasan") -> Path:
    """Make ``import sasan`` work and return the folder it is imported from.

    An already importable ``sasan`` (pip-installed, or the installed extension's copy on Slicer's module
    path) is used as is; otherwise the first of ``engine_roots`` holding ``sasan/__init__.py`` is put first
    on ``sys.path``.
    """
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.origin:
        return Path(spec.origin).resolve().parent.parent
    for root in engine_roots(Path(module_dir)):
        if (root / package / "__init__.py").is_file():
            sys.path.insert(0, str(root))
            importlib.invalidate_caches()
            logger.info("using the SASAN engine in %s", root)
            return root
    searched = ", ".join(str(root) for root in engine_roots(Path(module_dir)))
    raise EngineNotFoundError(f"the SASAN engine (package '{package}') was not found; looked in {searched}")


def require_torch() -> None:
    """Raise ``PyTorchMissingError`` (saying how to get it) unless ``import torch`` works."""
    if importlib.util.find_spec("torch") is None:
        raise PyTorchMissingError(
            "SASAN needs PyTorch, which is not installed: in Slicer install the 'PyTorch' extension from the "
            "Extensions Manager and restart (or open the SASAN module once, which offers to install it)")


def read_requirements(path: Path) -> list[str]:
    """Requirement specifiers of a requirements file, one a line (comments and blank lines skipped)."""
    requirements = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirements.append(line)
    return requirements


def requirement_name(requirement: str) -> str:
    """The distribution name of a specifier: ``"pyyaml>=6.0"`` -> ``"pyyaml"``."""
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement specifier: {requirement!r}")
    return match.group(1)


def missing_requirements(requirements: list[str]) -> list[str]:
    """The specifiers whose distribution is not installed (versions are not compared: present is enough)."""
    missing = []
    for requirement in requirements:
        try:
            importlib.metadata.distribution(requirement_name(requirement))
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement)
    return missing


def install_missing(
    requirements: list[str],
    confirm: Callable[[str], bool],
    install: Callable[[list[str]], object],
    purpose: str = "SASAN",
) -> bool:
    """Install the missing ``requirements`` once ``confirm(message)`` agrees; True when all are present.

    In Slicer: ``confirm`` is ``slicer.util.confirmOkCancelDisplay``, ``install`` ``slicer.util.pip_install``.
    """
    missing = missing_requirements(requirements)
    if not missing:
        return True
    message = (f"{purpose} needs these Python packages, which will be downloaded and installed now:\n\n"
               + "\n".join(missing))
    if not confirm(message):
        logger.info("installation of %s declined", ", ".join(missing))
        return False
    install(missing)
    importlib.invalidate_caches()
    still_missing = missing_requirements(missing)
    if still_missing:
        raise RuntimeError(f"installing {', '.join(still_missing)} failed; see the Python console for pip's output")
    return True
