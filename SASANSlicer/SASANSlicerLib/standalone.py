"""An MRML scene set up as the Slicer application sets one up for these modules, without the application.

Used where ``slicer-core`` stands in for Slicer: the tests, the screenshot script, the web front's processes.
The Volumes, Segmentations, Subject Hierarchy and Colors logics are attached to the scene (before any segment
is added) and the colour logic adds Slicer's built-in colour tables. Qt-free.
"""
from __future__ import annotations

import types


def attach_module_logics(scene) -> dict:
    """The module logics the library uses, attached to ``scene``, by module name; keep them alive as long as
    the scene."""
    import slicer
    import vtk

    logics = {"volumes": slicer.vtkSlicerVolumesLogic(), "segmentations": slicer.vtkSlicerSegmentationsModuleLogic(),
              "subjecthierarchy": slicer.vtkSlicerSubjectHierarchyModuleLogic(), "colors": slicer.vtkSlicerColorLogic()}
    # Without the application the colour logic cannot find Slicer's colour files and says so on stderr; the
    # built-in tables it adds are the ones the library uses.
    verbosity = vtk.vtkLogger.GetCurrentVerbosityCutoff()
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)
    try:
        for logic in logics.values():
            logic.SetMRMLScene(scene)
        logics["colors"].AddDefaultColorNodes()
    finally:
        vtk.vtkLogger.SetStderrVerbosity(verbosity)
    return logics


def module_namespace(logics: dict) -> types.SimpleNamespace:
    """What ``slicer.modules`` answers in the application: ``.<name>.logic()`` for each of ``logics``."""
    return types.SimpleNamespace(
        **{name: types.SimpleNamespace(logic=(lambda logic=logic: logic)) for name, logic in logics.items()})
