"""The Python packages the SASAN modules need, installed after the user agrees: torch through the PyTorch
extension, the others with pip.

Shared by both modules (SASANTrainer imports this library, never the SASAN module's GUI file).  The dialogs
are Slicer's (``slicer.util``), reached only when a package is missing; the module imports nothing but the
standard library while Slicer starts.
"""
from __future__ import annotations

import importlib.util
import logging
import traceback
from pathlib import Path
from typing import Callable, Optional

from . import environment

logger = logging.getLogger(__name__)

# The Lib folder sits in the module folder: SASANSlicer/ in the source tree, the scripted-modules folder
# (with every module's Resources/) once installed.
ENGINE_REQUIREMENTS = Path(__file__).resolve().parents[1] / "Resources" / "SASANSlicer-requirements.txt"


def ensure_torch() -> bool:
    """True when torch is installed, else after the PyTorch extension installed it (the user agreeing).
    torch is looked up, not imported: inference and training import it in their own process."""
    if importlib.util.find_spec("torch") is not None:
        return True
    import slicer

    try:
        import PyTorchUtils
    except ImportError:
        slicer.util.errorDisplay("SASAN needs PyTorch: install the 'PyTorch' extension from the Extensions Manager, "
                                 "restart Slicer and try again.")
        return False
    return PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True) is not None


def ensure_packages(requirements_file: Path, purpose: str) -> bool:
    """pip-install the packages of ``requirements_file`` that are missing, once the user agrees."""
    import slicer

    def install(requirements: list[str]) -> None:
        with slicer.util.WaitCursor():
            slicer.util.pip_install(requirements)

    return environment.install_missing(
        environment.read_requirements(requirements_file),
        confirm=lambda message: slicer.util.confirmOkCancelDisplay(message, f"{purpose}: install Python packages"),
        install=install,
        purpose=purpose,
    )


def ensure_dependencies(purpose: str = "SASAN", extra_requirements: Optional[Path] = None) -> bool:
    """torch, the engine's packages, then those of ``extra_requirements`` (e.g. the Trainer's); False as soon as
    one is missing and not installed."""
    return (ensure_torch() and ensure_packages(ENGINE_REQUIREMENTS, purpose)
            and (extra_requirements is None or ensure_packages(extra_requirements, purpose)))


def ensure_dependencies_or_explain(ensure: Callable[[], bool]) -> bool:
    """``ensure()``, with one error message box (and False) if installing packages fails."""
    try:
        return ensure()
    except Exception as error:
        logger.exception("installing SASAN's Python packages failed")
        import slicer

        slicer.util.errorDisplay(f"Could not install the required Python packages: {error}",
                                 detailedText=traceback.format_exc())
        return False
