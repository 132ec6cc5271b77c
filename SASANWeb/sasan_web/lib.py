"""Where the Slicer module's Qt-free library lives, and the little of Slicer's application it expects.

The web app runs from a source checkout (``pip install -e '.[web]'``): ``SASANSlicer/`` lies beside
``SASANWeb/``, and ``SASANSlicerLib`` is imported from there, as Slicer imports it from its module folder.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
SLICER_MODULE_DIR = REPOSITORY / "SASANSlicer"


class SlicerLibNotFoundError(ImportError):
    """``SASANSlicer/SASANSlicerLib`` is not beside this package (a non-editable install)."""


def ensure_slicer_lib() -> Path:
    """Put ``SASANSlicer/`` on ``sys.path`` (once) so that ``import SASANSlicerLib`` works; its folder."""
    if not (SLICER_MODULE_DIR / "SASANSlicerLib" / "__init__.py").is_file():
        raise SlicerLibNotFoundError(
            f"SASANSlicerLib was not found in {SLICER_MODULE_DIR}: run 'sasan web' from a source checkout "
            "installed with pip install -e '.[web]'")
    if str(SLICER_MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(SLICER_MODULE_DIR))
    return SLICER_MODULE_DIR


def provide_module_logics(segmentations_logic) -> None:
    """``slicer.modules.segmentations.logic()``, which the library calls as in Slicer, where the application
    provides it (slicer-core has no ``slicer.modules``); an existing ``slicer.modules`` is left alone."""
    import slicer

    if getattr(slicer, "modules", None) is None:
        slicer.modules = types.SimpleNamespace(
            segmentations=types.SimpleNamespace(logic=lambda: segmentations_logic))


def new_scene():
    """A bare MRML scene with what the library needs: default colour tables, the Segmentations and
    Subject Hierarchy logics (for a scene without trame-slicer's ``SlicerApp``, as in the child process).
    Returns ``(scene, logics)``; keep ``logics`` alive as long as the scene."""
    import slicer

    ensure_slicer_lib()
    from SASANSlicerLib.standalone import attach_module_logics

    scene = slicer.vtkMRMLScene()
    logics = attach_module_logics(scene)
    provide_module_logics(logics["segmentations"])
    return scene, logics
