"""The module files load as Slicer loads them at start-up (Qt/ScriptedLoadableModule stubbed), without
importing the engine or its packages; Sample Data registration and the Logic's GUI-free parts work."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("slicer", reason="loading the module files needs the slicer-core wheel")

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(r'''
    import sys, types
    sys.path[:0] = [{slicer_dir!r}, {trainer_dir!r}]
    import slicer

    def stub(name, **attributes):
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module
        return module

    class Base:  # what the ScriptedLoadableModule base classes do on construction
        def __init__(self, parent=None):
            self.parent = parent

    connections = []
    slicer.app = types.SimpleNamespace(connect=lambda signal, slot: connections.append((signal, slot)))
    stub("qt")
    stub("ctk")
    stub("slicer.ScriptedLoadableModule", ScriptedLoadableModule=Base, ScriptedLoadableModuleLogic=Base,
         ScriptedLoadableModuleWidget=Base, ScriptedLoadableModuleTest=Base)
    stub("slicer.parameterNodeWrapper", parameterNodeWrapper=lambda cls: cls,
         Choice=lambda choices: ("Choice", tuple(choices)), WithinRange=lambda low, high: ("WithinRange", low, high))
    registered = []
    stub("SampleData", SampleDataLogic=types.SimpleNamespace(
        registerCustomSampleDataSource=lambda **source: registered.append(source)))

    before = set(sys.modules)
    import SASANSlicer, SASANTrainer
    for heavy in ("sasan", "torch", "yaml", "SimpleITK", "safetensors"):
        assert heavy not in set(sys.modules) - before, heavy + " imported at start-up"

    parent = types.SimpleNamespace()
    SASANSlicer.SASANSlicer(parent)
    SASANTrainer.SASANTrainer(types.SimpleNamespace())
    assert parent.title == "SASAN" and parent.categories == ["Image Synthesis"]
    assert connections == [("startupCompleted()", SASANSlicer.registerSampleData)]
    SASANSlicer.registerSampleData()
    assert [s["sampleName"] for s in registered] == ["SASANPhantomCT", "SASANPhantomMR"]
    for source in registered:
        assert source["uris"].startswith("file://") and source["uris"].endswith(source["fileNames"])
        assert source["nodeNames"] == source["sampleName"] and callable(source["customDownloader"])

    logic = SASANSlicer.SASANSlicerLogic()
    assert "No model selected" in logic.modelCardHtml("")
    assert "does not exist" in logic.modelCardHtml("/nonexistent/model.safetensors")
    assert logic.attentionChoices(None) == [("Hidden", None)]
    try:
        logic.process(None, "", "MR")
    except ValueError as error:
        assert "select a model file" in str(error)
    else:
        raise AssertionError("process without a model must refuse")
    print("module files load")
''')


def test_module_files_load_without_the_engine():
    script = SCRIPT.format(slicer_dir=str(ROOT / "SASANSlicer"), trainer_dir=str(ROOT / "SASANTrainer"))
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "module files load" in completed.stdout
