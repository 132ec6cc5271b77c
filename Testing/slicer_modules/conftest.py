"""Fixtures for the Slicer modules' glue, run with the slicer-core wheel (real MRML, no application).

This folder is deliberately not called ``slicer``: the ``slicer`` package extends its ``__path__`` with
every ``slicer`` folder on ``sys.path`` (pytest puts ``Testing/`` there) and then imports each module it
finds in them as ``slicer.<name>`` — the test files themselves.
"""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for module_dir in (ROOT / "SASANSlicer", ROOT / "SASANTrainer"):
    if str(module_dir) not in sys.path:
        sys.path.insert(0, str(module_dir))


@pytest.fixture
def scene(monkeypatch):
    """A fresh MRML scene as ``slicer.mrmlScene``, with ``slicer.modules.<name>.logic()`` shims."""
    slicer = pytest.importorskip("slicer", reason="the MRML glue tests need the slicer-core wheel")
    scene = slicer.vtkMRMLScene()
    from SASANSlicerLib.standalone import attach_module_logics, module_namespace

    logics = attach_module_logics(scene)
    modules = module_namespace(logics)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer, "modules", modules, raising=False)
    yield scene
    scene.Clear(True)

