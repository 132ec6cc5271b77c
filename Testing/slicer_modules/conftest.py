"""Fixtures for the Slicer modules' glue, run with the slicer-core wheel (real MRML, no application).

This folder is deliberately not called ``slicer``: the ``slicer`` package extends its ``__path__`` with
every ``slicer`` folder on ``sys.path`` (pytest puts ``Testing/`` there) and then imports each module it
finds in them as ``slicer.<name>`` — the test files themselves.
"""
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for module_dir in (ROOT / "SASANSlicer", ROOT / "SASANTrainer"):
    if str(module_dir) not in sys.path:
        sys.path.insert(0, str(module_dir))


def _logics_for(scene) -> dict:
    """The module logics the glue uses, attached to ``scene`` (before any segment is added)."""
    import slicer
    import vtk

    volumes = slicer.vtkSlicerVolumesLogic()
    volumes.SetMRMLScene(scene)
    segmentations = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations.SetMRMLScene(scene)
    subject_hierarchy = slicer.vtkSlicerSubjectHierarchyModuleLogic()
    subject_hierarchy.SetMRMLScene(scene)
    colors = slicer.vtkSlicerColorLogic()
    # Without the application the colour logic cannot find Slicer's colour files and says so on stderr;
    # the built-in tables it adds are the ones these tests use.
    verbosity = vtk.vtkLogger.GetCurrentVerbosityCutoff()
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)
    try:
        colors.SetMRMLScene(scene)
        colors.AddDefaultColorNodes()
    finally:
        vtk.vtkLogger.SetStderrVerbosity(verbosity)
    return {"volumes": volumes, "segmentations": segmentations, "subjecthierarchy": subject_hierarchy,
            "colors": colors}


@pytest.fixture
def scene(monkeypatch):
    """A fresh MRML scene as ``slicer.mrmlScene``, with ``slicer.modules.<name>.logic()`` shims."""
    slicer = pytest.importorskip("slicer", reason="the MRML glue tests need the slicer-core wheel")
    scene = slicer.vtkMRMLScene()
    logics = _logics_for(scene)
    modules = types.SimpleNamespace(
        **{name: types.SimpleNamespace(logic=(lambda logic=logic: logic)) for name, logic in logics.items()}
    )
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer, "modules", modules, raising=False)
    yield scene
    scene.Clear(True)

