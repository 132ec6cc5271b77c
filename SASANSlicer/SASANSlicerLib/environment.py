"""What the modules need from Slicer's Python: the ``sasan`` engine on ``sys.path``, PyTorch and a few pip packages.

Each module installs only the packages its code imports (its requirements file); numpy, scipy and SimpleITK
come with Slicer, torch with the PyTorch extension (at least ``MINIMUM_TORCH``).  Packages are installed only
after the user agrees, never while Slicer runs its tests, and with torch and numpy pinned to the installed
versions (a pip constraints file), so that no dependency can replace Slicer's numpy or a CUDA build of torch.
Nothing here imports torch or Qt: versions are read from the installed distributions' metadata.

Standard library only: this runs before anything else of the engine can be imported.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import operator
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable, Optional

logger = logging.getLogger(__name__)

MINIMUM_TORCH = "2.5"  # the engine catches torch.OutOfMemoryError (new in PyTorch 2.5)
PINNED = ("torch", "numpy")  # never replaced by pip: Slicer's numpy, the PyTorch extension's (CUDA) torch
SLICER_BUNDLED = ("numpy", "scipy", "SimpleITK")  # shipped with Slicer's Python: in no requirements file

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_CLAUSE = re.compile(r"(~=|==|!=|<=|>=|<|>)\s*([^\s,;]+)")
_RELEASE = re.compile(r"^v?(\d+(?:\.\d+)*)")
_COMPARE = {"==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge, "<": operator.lt,
            ">": operator.gt}


class EngineNotFoundError(ImportError):
    """The ``sasan`` package is neither importable nor beside the module."""


class PyTorchMissingError(ImportError):
    """``torch`` is not installed in this Python, or is older than ``MINIMUM_TORCH``."""


class InstallationRefusedError(RuntimeError):
    """Packages are missing while Slicer runs its tests, which must not change Slicer's Python."""


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


# Versions ------------------------------------------------------------------------------------------

def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version: ``"2.5.1+cu121"`` -> ``(2, 5, 1)``, ``"2.6.0.dev20241001"`` ->
    ``(2, 6, 0)`` (pre-releases and local labels are not compared)."""
    match = _RELEASE.match(version.strip())
    if match is None:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def _padded(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)), b + (0,) * (width - len(b))


def _clause_holds(installed: tuple[int, ...], op: str, wanted: str) -> bool:
    if wanted.endswith(".*"):  # ==X.Y.* / !=X.Y.*: the release starts (or does not start) with X.Y
        prefix = release(wanted[:-2])
        return (installed[:len(prefix)] == prefix) == (op == "==")
    have, want = _padded(installed, release(wanted))
    if op == "~=":  # ~=X.Y.Z: >= X.Y.Z and == X.Y.*
        prefix = release(wanted)[:-1]
        return have >= want and installed[:len(prefix)] == prefix
    return _COMPARE[op](have, want)


def version_satisfies(version: str, requirement: str) -> bool:
    """Whether ``version`` meets every version clause of ``requirement`` (``"monai>=1.3,<1.6"``); extras and
    environment markers are ignored, and so are pre-release and local labels."""
    installed = release(version)
    clauses = _CLAUSE.findall(requirement.split(";", 1)[0])
    return all(_clause_holds(installed, op, wanted) for op, wanted in clauses)


def installed_version(distribution: str) -> Optional[str]:
    """The installed version of ``distribution``, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


# PyTorch -------------------------------------------------------------------------------------------

def torch_problem(minimum: str = MINIMUM_TORCH, version: Optional[str] = "installed") -> Optional[str]:
    """None when PyTorch ``minimum`` or newer is installed, else a sentence saying what is wrong and what to do.

    ``version`` is the torch version to judge (default: the installed one, read without importing torch).
    """
    version = installed_version("torch") if version == "installed" else version
    how = (f"in Slicer, open the PyTorch Utils module (the 'PyTorch' extension, from the Extensions Manager), "
           f"install PyTorch with version requirement '>={minimum}', and restart Slicer")
    if version is None:
        return f"SASAN needs PyTorch {minimum} or newer, which is not installed: {how}"
    if not version_satisfies(version, f">={minimum}"):
        return f"SASAN needs PyTorch {minimum} or newer; this Python has PyTorch {version}: {how}"
    return None


def device_choices(platform: str = sys.platform) -> list[str]:
    """The device selector's entries: ``auto`` (a CUDA GPU if there is one, else the CPU), ``cuda``, ``cpu``,
    and on macOS ``mps`` (Apple GPUs: PyTorch's macOS builds have the MPS backend, the others do not)."""
    return ["auto", "cuda", "cpu", *(["mps"] if platform == "darwin" else [])]


def require_torch(minimum: str = MINIMUM_TORCH) -> None:
    """Raise ``PyTorchMissingError`` (saying how to get it) unless PyTorch ``minimum`` or newer is installed."""
    problem = torch_problem(minimum)
    if problem is not None:
        raise PyTorchMissingError(problem)


# pip packages --------------------------------------------------------------------------------------

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
    """The specifiers whose distribution is not installed, or is installed in a version they exclude."""
    missing = []
    for requirement in requirements:
        version = installed_version(requirement_name(requirement))
        if version is None or not version_satisfies(version, requirement):
            missing.append(requirement)
    return missing


def constraints_text(pinned: tuple[str, ...] = PINNED) -> str:
    """pip constraints pinning the installed version of each of ``pinned`` (those not installed are left free)."""
    lines = [f"{name}=={version}" for name in pinned if (version := installed_version(name)) is not None]
    return "".join(f"{line}\n" for line in lines)


def dependency_problems(requirements: list[str], torch: bool = True, minimum_torch: str = MINIMUM_TORCH) -> list[str]:
    """What keeps this Python from running code that imports ``requirements`` (and torch): one sentence each,
    [] when nothing is missing."""
    problems = [problem] if torch and (problem := torch_problem(minimum_torch)) is not None else []
    missing = missing_requirements(requirements)
    if missing:
        problems.append(f"missing or too old Python packages: {', '.join(missing)} (the module installs them "
                        "after asking, except while Slicer runs tests)")
    return problems


def refuse_in_testing(missing: list[str], testing: bool, purpose: str = "SASAN") -> None:
    """Raise ``InstallationRefusedError`` when packages are ``missing`` while Slicer runs its tests
    (``slicer.app.testingEnabled()``): tests must find Slicer's Python as it is, never change it."""
    if testing and missing:
        raise InstallationRefusedError(
            f"{purpose} needs {', '.join(missing)}, which Slicer does not install while it runs tests (--testing); "
            "install them first (open the module once outside testing mode, or pip_install them)")


def find_pip_ensure() -> Optional[Callable]:
    """``slicer.packaging.pip_ensure`` (Slicer 5.12 and later), or None where Slicer does not have it."""
    try:
        packaging = importlib.import_module("slicer.packaging")
    except ImportError:
        return None
    return getattr(packaging, "pip_ensure", None)


def pip_installer(pip_ensure: Optional[Callable], pip_install: Callable, requester: str) -> Callable:
    """``install(requirements, constraints_file)`` for ``install_missing``.

    With ``pip_ensure`` (Slicer >= 5.12: progress dialog, restart prompt when an imported package changed) the
    user has already agreed, so it does not ask again; otherwise ``slicer.util.pip_install`` gets pip's own
    arguments, the constraints file as ``-c``.
    """
    if pip_ensure is not None:
        def install(requirements: list[str], constraints: Path) -> object:
            return pip_ensure(list(requirements), constraints=str(constraints), requester=requester,
                              prompt_install=False)
    else:
        def install(requirements: list[str], constraints: Path) -> object:
            return pip_install([*requirements, "-c", str(constraints)])
    return install


def install_missing(
    requirements: list[str],
    confirm: Callable[[str], bool],
    install: Callable[[list[str], Path], object],
    purpose: str = "SASAN",
    testing: bool = False,
) -> bool:
    """Install the missing ``requirements`` once ``confirm(message)`` agrees; True when all are present.

    ``install(missing, constraints_file)`` runs pip (``pip_installer``); the constraints file pins the
    installed torch and numpy.  While Slicer runs its tests (``testing``), missing packages raise
    ``InstallationRefusedError`` before anything is asked or installed.
    """
    missing = missing_requirements(requirements)
    if not missing:
        return True
    refuse_in_testing(missing, testing, purpose)
    message = (f"{purpose} needs these Python packages, which will be downloaded and installed now "
               "(torch and numpy are kept as they are):\n\n" + "\n".join(missing))
    if not confirm(message):
        logger.info("installation of %s declined", ", ".join(missing))
        return False
    with tempfile.TemporaryDirectory(prefix="sasan-pip-") as folder:
        constraints = Path(folder) / "constraints.txt"
        constraints.write_text(constraints_text(), encoding="utf-8")
        install(missing, constraints)
    importlib.invalidate_caches()
    still_missing = missing_requirements(missing)
    if still_missing:
        raise RuntimeError(f"installing {', '.join(still_missing)} failed; see the Python console for pip's output")
    return True
