"""The Python packages the SASAN modules need, installed after the user agrees: torch through the PyTorch
extension, the others with pip.

Shared by both modules (SASANTrainer imports this library, never the SASAN module's GUI file).  The dialogs
are Slicer's (``slicer.util``), reached only when a package is missing; the module imports nothing but the
standard library while Slicer starts.
"""
from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Callable, Optional

from . import environment

logger = logging.getLogger(__name__)

# The Lib folder sits in the module folder: SASANSlicer/ in the source tree, the scripted-modules folder
# (with every module's Resources/) once installed.
ENGINE_REQUIREMENTS = Path(__file__).resolve().parents[1] / "Resources" / "SASANSlicer-requirements.txt"


def ensure_torch() -> bool:
    """True when torch >= ``environment.MINIMUM_TORCH`` is installed, else after the PyTorch extension installed
    it (the user agreeing). torch is looked up, not imported: inference and training import it in their own
    process. While Slicer runs tests nothing is installed (``InstallationRefusedError`` names what is missing)."""
    problem = environment.torch_problem()
    if problem is None:
        return True
    import slicer

    environment.refuse_in_testing([f"torch>={environment.MINIMUM_TORCH}"], slicer.app.testingEnabled())
    try:
        import PyTorchUtils
    except ImportError:
        slicer.util.errorDisplay(problem)
        return False
    torch_was_imported = "torch" in sys.modules
    requirement = f">={environment.MINIMUM_TORCH}"
    if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True, torchVersionRequirement=requirement) is None:
        return False
    problem = environment.torch_problem()
    if problem is not None or torch_was_imported:
        slicer.util.errorDisplay(problem or "PyTorch was updated: restart Slicer to use it.")
        return False
    return True


def ensure_packages(requirements_file: Path, purpose: str) -> bool:
    """pip-install the packages of ``requirements_file`` that are missing or too old, once the user agrees,
    keeping torch and numpy as they are (``slicer.packaging.pip_ensure`` where Slicer has it)."""
    import slicer

    def pip_install(arguments) -> None:
        with slicer.util.WaitCursor():
            slicer.util.pip_install(arguments)

    return environment.install_missing(
        environment.read_requirements(requirements_file),
        confirm=lambda message: slicer.util.confirmOkCancelDisplay(message, f"{purpose}: install Python packages"),
        install=environment.pip_installer(environment.find_pip_ensure(), pip_install, purpose),
        purpose=purpose,
        testing=slicer.app.testingEnabled(),
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


def require_test_dependencies(test_case, requirements_files=(), torch: bool = False) -> None:
    """Shared set-up of both modules' self-tests: for a test that translates or trains, PyTorch and the packages
    of ``requirements_files``. While Slicer runs tests (ctest, ``--testing``) nothing is installed and a test
    whose packages are missing is skipped saying which; "Reload and Test" in the application offers to install
    them first. The caller makes the engine importable first."""
    import slicer

    requirements = [r for path in requirements_files for r in environment.read_requirements(path)]
    problems = environment.dependency_problems(requirements, torch)
    if problems and not slicer.app.testingEnabled():
        ensure = [ensure_torch] if torch else []
        ensure += [lambda path=path: ensure_packages(path, "SASAN tests") for path in requirements_files]
        if all(ensure_dependencies_or_explain(step) for step in ensure):
            problems = environment.dependency_problems(requirements, torch)
    if problems:
        test_case.skipTest("; ".join(problems))
