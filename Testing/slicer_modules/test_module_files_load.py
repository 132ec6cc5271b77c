"""The module files load as Slicer loads them at start-up (Qt/ScriptedLoadableModule stubbed), without
importing the engine or its packages; Sample Data registration makes the files it registers (without PyTorch or
PyYAML), dependency installation refuses while Slicer runs tests, and the Logic's GUI-free parts work."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("slicer", reason="loading the module files needs the slicer-core wheel")

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(r'''
    import os, re, sys, types, urllib.request
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
    slicer.app = types.SimpleNamespace(connect=lambda signal, slot: connections.append((signal, slot)),
                                       testingEnabled=lambda: True)  # as under ctest
    stub("qt")
    stub("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text)
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
    assert parent.contributors and all(re.fullmatch(r"[^()]+ \([^()]+\)", c) for c in parent.contributors)
    sys.modules["torch"] = sys.modules["yaml"] = None  # the phantom samples need neither: importing them fails
    SASANSlicer.registerSampleData()
    assert [s["sampleName"] for s in registered] == ["SASANPhantomCT", "SASANPhantomMR"]
    for source in registered:  # SampleData.downloadSample copies the URI: the file must exist already
        assert source["uris"].startswith("file://") and source["uris"].endswith(source["fileNames"])
        assert source["nodeNames"] == source["sampleName"] and callable(source["customDownloader"])
        with urllib.request.urlopen(source["uris"]) as response:
            assert len(response.read()) > 10000
    del sys.modules["torch"], sys.modules["yaml"]

    # While Slicer runs tests, nothing is installed, not even after "asking" (confirm dialogs say yes there).
    import SASANSlicerLib.dependencies as dependencies
    import SASANSlicerLib.environment as environment
    actions = []
    stub("PyTorchUtils", PyTorchUtilsLogic=lambda: types.SimpleNamespace(
        installTorch=lambda **arguments: actions.append(("installTorch", arguments))))
    slicer.util.pip_install = lambda arguments: actions.append(("pip_install", arguments))
    slicer.util.confirmOkCancelDisplay = lambda *arguments: actions.append("asked") or True
    slicer.util.errorDisplay = lambda *arguments, **keywords: actions.append("error shown")
    torch_problem = environment.torch_problem
    environment.torch_problem = lambda *arguments: "no PyTorch"
    try:
        SASANSlicer.SASANSlicerLogic.ensureDependencies()
    except environment.InstallationRefusedError as error:
        assert "torch>=2.5" in str(error) and "tests" in str(error), error
    else:
        raise AssertionError("installing PyTorch must be refused in testing mode")
    environment.torch_problem = torch_problem
    requirements = os.path.join(os.environ["SASAN_CACHE"], "requirements.txt")
    with open(requirements, "w") as file:
        file.write("numpy\nnot-installed-xyz>=1\n")
    try:
        dependencies.ensure_packages(requirements, "SASAN")
    except environment.InstallationRefusedError as error:
        assert "not-installed-xyz>=1" in str(error) and "numpy" not in str(error), error
    else:
        raise AssertionError("pip installs must be refused in testing mode")
    assert actions == [], actions

    class TestCase:  # the self-tests' shared set-up skips, naming what is missing, and installs nothing
        def skipTest(self, reason):
            raise RuntimeError("skipped: " + reason)
    try:
        dependencies.require_test_dependencies(TestCase(), [requirements], torch=False)
    except RuntimeError as skipped:
        assert "skipped: missing or too old Python packages: not-installed-xyz>=1" in str(skipped), skipped
    else:
        raise AssertionError("a test whose packages are missing must be skipped in testing mode")
    assert actions == [], actions

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


def test_module_files_load_without_the_engine(tmp_path):
    script = SCRIPT.format(slicer_dir=str(ROOT / "SASANSlicer"), trainer_dir=str(ROOT / "SASANTrainer"))
    environment = {**os.environ, "SASAN_CACHE": str(tmp_path)}
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                               env=environment)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "module files load" in completed.stdout
