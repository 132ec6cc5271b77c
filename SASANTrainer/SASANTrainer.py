"""SASANTrainer: train a SASAN model from a YAML configuration in a background process.

Thin module file: the GUI runs the engine's ``sasan train`` with Slicer's command-line Python
(``PythonSlicer -m sasan train ...``) as a ``QProcess``, shows its log and progress lines live, and hands
the model file it exports to the SASAN module.  Slicer stays usable meanwhile; Stop asks the run to end
after its current step with a checkpoint; closing Slicer ends it at once.
"""
import logging
import time
from pathlib import Path
from typing import Optional

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from SASANSlicerLib.dependencies import (
    ENGINE_REQUIREMENTS,
    ensure_dependencies,
    ensure_dependencies_or_explain,
    require_test_dependencies,
)
from SASANSlicerLib.environment import ensure_engine_importable
from SASANSlicerLib.processes import end_process_tree
from SASANTrainerLib.command import TrainingCommand, new_run_folder, training_command
from SASANTrainerLib.training_log import OutputReader

MODULE_DIR = Path(__file__).resolve().parent
REQUIREMENTS_FILE = MODULE_DIR / "Resources" / "SASANTrainer-requirements.txt"
# After Stop, the run finishes its step and writes a checkpoint (a paper-size step takes up to half a
# minute on a CPU); past this, the process and what it started are ended.
STOP_GRACE_MS = 90000


class SASANTrainer(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SASAN Trainer")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Image Synthesis")]
        self.parent.dependencies = ["SASANSlicer"]
        self.parent.contributors = ["SASAN for 3D Slicer developers (SASAN-for-3D-Slicer)"]
        self.parent.helpText = _("""
Trains a SASAN model (CT/MRI translation with segmentation) from a YAML configuration, in a
background process: Slicer stays usable, the log and progress show here, and the resulting model file
is offered to the SASAN module. Headless: Slicer --no-main-window --python-script
<scripted-modules>/SASANTrainerLib/train.py -- CONFIG.yaml --output DIR [--export MODEL.safetensors] [--resume],
or PythonSlicer -m sasan train with the same arguments.
""") + '<p><a href="https://github.com/SASAN-for-3D-Slicer/SlicerSASAN#readme">' + _("Documentation") + "</a></p>"
        self.parent.acknowledgementText = _("""
Method: D. Tomar et al., "Self-Attentive Spatial Adaptive Normalization for Cross-Modality Domain
Adaptation", IEEE Transactions on Medical Imaging 2021.
""")


@parameterNodeWrapper
class SASANTrainerParameterNode:
    """configPath - the run configuration (YAML); outputDirectory - the run folder (checkpoints, logs,
    model file); resume - continue the run folder's last checkpoint."""

    configPath: Path
    outputDirectory: Path
    resume: bool = False


def _isSet(path: Optional[Path]) -> bool:
    return path is not None and str(path) not in ("", ".")


class SASANTrainerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        # The last process stays referenced after it finished: Qt is still inside its signal then, and
        # dropping the Python object would delete the QProcess under it. The next Start replaces it.
        self._process = None
        self._running = False
        self._command: Optional[TrainingCommand] = None
        self._reader = OutputReader()
        self._stopping = False
        self._started = 0.0
        self._modelFile: Optional[Path] = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SASANTrainer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SASANTrainerLogic()

        self.ui.progressBar.setVisible(False)
        self.ui.useModelButton.enabled = False
        self.ui.presetSelector.addItem("Choose a preset...", "")
        for preset in SASANTrainerLogic.presets():
            self.ui.presetSelector.addItem(preset.stem, str(preset))
        self.ui.presetSelector.connect("currentIndexChanged(int)", self.onPresetSelected)
        self.ui.startButton.connect("clicked(bool)", self.onStartButton)
        self.ui.useModelButton.connect("clicked(bool)", self.onUseModelButton)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self._running:
            end_process_tree(self._process.processId())  # the application is closing: nothing left behind
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateStartButton)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not _isSet(self._parameterNode.outputDirectory):
            self._parameterNode.outputDirectory = new_run_folder()

    def setParameterNode(self, parameterNode: Optional[SASANTrainerParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateStartButton)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateStartButton)
        self.updateStartButton()

    def onPresetSelected(self, index: int) -> None:
        preset = self.ui.presetSelector.itemData(index)
        if preset and self._parameterNode:
            self._parameterNode.configPath = Path(preset)

    def updateStartButton(self, caller=None, event=None) -> None:
        if self._running:
            return  # the button is Stop
        parameters = self._parameterNode
        problem = None
        if not parameters or not _isSet(parameters.configPath) or not parameters.configPath.is_file():
            problem = "Choose a configuration file (.yaml)."
        elif not _isSet(parameters.outputDirectory):
            problem = "Choose a run folder."
        self.ui.startButton.enabled = problem is None
        self.ui.startButton.toolTip = problem or "Train in a background process."

    # The training process

    def onStartButton(self) -> None:
        if self._running:
            self.stopTraining()
            return
        if not ensure_dependencies_or_explain(self.logic.ensureDependencies):
            self.ui.statusLabel.text = "Not started: required Python packages are missing."
            return
        parameters = self._parameterNode
        try:
            self._command = self.logic.trainingCommand(parameters.configPath, parameters.outputDirectory,
                                                       parameters.resume)
        except ValueError as error:
            slicer.util.errorDisplay(f"Cannot start the training: {error}")
            return
        from sasan.training.stop import StopRequest

        StopRequest(self._command.run_folder).clear()  # left by a run ended before it could honour it
        process = qt.QProcess()
        process.setWorkingDirectory(str(self._command.working_directory))
        process.setProcessChannelMode(qt.QProcess.MergedChannels)
        environment = qt.QProcessEnvironment.systemEnvironment()
        for name, value in self._command.environment.items():
            environment.insert(name, value)
        process.setProcessEnvironment(environment)
        process.connect("readyReadStandardOutput()", self.onProcessOutput)
        process.connect("finished(int,QProcess::ExitStatus)", self.onProcessFinished)
        process.connect("errorOccurred(QProcess::ProcessError)", self.onProcessError)
        self._process, self._stopping, self._reader = process, False, OutputReader()
        self._started, self._modelFile = time.monotonic(), None
        self.ui.logTextEdit.clear()
        self.appendLog(f"$ {self._command.program} {' '.join(self._command.arguments)}")
        self.setRunning(True)
        process.start(self._command.program, self._command.arguments)

    def stopTraining(self) -> None:
        """Ask the run to stop after its current step (it writes a checkpoint); end it if it has not
        within ``STOP_GRACE_MS``."""
        from sasan.training.stop import request_stop

        self._stopping = True
        self.ui.startButton.enabled = False
        self.ui.statusLabel.text = "Stopping after the current step (a checkpoint is written)..."
        request_stop(self._command.run_folder)
        process = self._process

        def endIfStillRunning():
            if self._process is process and self._running:
                self.appendLog("The run did not stop in time: ending it.")
                end_process_tree(process.processId())

        qt.QTimer.singleShot(STOP_GRACE_MS, endIfStillRunning)

    def onProcessOutput(self) -> None:
        data = self._process.readAllStandardOutput().data()
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        for line in self._reader.feed(text):
            self.showLine(line)

    def showLine(self, line: str) -> None:
        from sasan.progress import parse_progress_line

        report = parse_progress_line(line)
        if report is None:
            self.appendLog(line)
            return
        self.ui.progressBar.setValue(round(100 * report.fraction))
        if not self._stopping:
            self.ui.statusLabel.text = f"Training: {report.message}"

    def appendLog(self, line: str) -> None:
        self.ui.logTextEdit.appendPlainText(line)

    def onProcessError(self, error) -> None:
        if error == qt.QProcess.FailedToStart:
            self.setRunning(False)
            slicer.util.errorDisplay(
                f"Could not start '{self._command.program}'. Is Slicer's Python (PythonSlicer) installed?")

    def onProcessFinished(self, exitCode: int, exitStatus) -> None:
        for line in self._reader.flush():
            self.showLine(line)
        minutes = (time.monotonic() - self._started) / 60
        stopped = self._stopping
        self.setRunning(False)
        modelFile = self._command.model_file
        if exitStatus == qt.QProcess.NormalExit and exitCode == 0 and modelFile.is_file():
            self._modelFile = modelFile
            self.ui.useModelButton.enabled = True
            self.ui.statusLabel.text = f"Finished in {minutes:.1f} min: {modelFile}"
            self.logic.offerModel(modelFile)
            self._parameterNode.resume = False
            self._parameterNode.outputDirectory = new_run_folder()  # this one is used: Start trains anew
        elif stopped:
            self.ui.statusLabel.text = "Stopped. Tick Resume and Start to continue from the last checkpoint."
        else:
            self.ui.statusLabel.text = f"Training failed (exit status {exitCode})."
            slicer.util.errorDisplay(f"Training failed (exit status {exitCode}). The log shows why.")

    def setRunning(self, running: bool) -> None:
        self._running = running
        self.ui.startButton.text = "Stop" if running else "Start training"
        self.ui.startButton.enabled = True
        self.ui.inputsCollapsibleButton.enabled = not running
        self.ui.progressBar.setVisible(running)
        self.ui.progressBar.setValue(0)
        if running:
            self.ui.useModelButton.enabled = False
            self.ui.statusLabel.text = "Starting..."
            self.ui.logCollapsibleButton.collapsed = False
        else:
            self.updateStartButton()

    def onUseModelButton(self) -> None:
        if self._modelFile is not None:
            self.logic.offerModel(self._modelFile)
            slicer.util.selectModule("SASANSlicer")


class SASANTrainerLogic(ScriptedLoadableModuleLogic):
    def getParameterNode(self):
        return SASANTrainerParameterNode(super().getParameterNode())

    @staticmethod
    def engineRoot() -> Path:
        """The folder the ``sasan`` engine is imported from (beside the modules once installed)."""
        return ensure_engine_importable(MODULE_DIR)

    @staticmethod
    def presets() -> list:
        """The configuration presets shipped with SASAN."""
        SASANTrainerLogic.engineRoot()
        from sasan.resources import find_presets

        return find_presets(MODULE_DIR)

    @staticmethod
    def trainingCommand(configPath: Path, runFolder: Path, resume: bool = False, steps: Optional[int] = None,
                        device: Optional[str] = None) -> TrainingCommand:
        """``PythonSlicer -m sasan train`` for ``configPath`` into ``runFolder`` (``ValueError`` says why not)."""
        return training_command(configPath, runFolder, SASANTrainerLogic.engineRoot(), resume, steps, device)

    @staticmethod
    def ensureDependencies() -> bool:
        """What the SASAN module needs (torch, engine packages) plus the training-only packages."""
        return ensure_dependencies("SASAN Trainer", REQUIREMENTS_FILE)

    @staticmethod
    def offerModel(modelFile: Path) -> None:
        """Make ``modelFile`` the SASAN module's selected model."""
        slicer.util.getModuleLogic("SASANSlicer").getParameterNode().modelPath = str(modelFile)
        logging.info("SASAN Trainer: model file %s selected in the SASAN module", modelFile)


class SASANTrainerTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: the headless script trains the smallest preset and exports a model file.

    Each test starts with ``requireDependencies``: any order works, and nothing is installed while Slicer
    runs tests (a test whose packages are missing is skipped saying which).
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        import unittest

        for test in (self.test_MissingConfigIsRefused, self.test_TinyPresetTrainsAndExports):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as reason:
                self.delayDisplay(f"{test.__name__} skipped: {reason}")

    def requireDependencies(self, training: bool) -> None:
        """The engine, and with ``training`` what a training run imports (translation's packages and ours)."""
        ensure_engine_importable(MODULE_DIR)
        requirementsFiles = [ENGINE_REQUIREMENTS, REQUIREMENTS_FILE] if training else []
        require_test_dependencies(self, requirementsFiles, torch=training)

    @staticmethod
    def _run(command: TrainingCommand, timeoutSeconds: int) -> tuple:
        """Run ``command`` as the module does; (exit status, everything it printed)."""
        import os
        import subprocess

        completed = subprocess.run([command.program, *command.arguments], cwd=str(command.working_directory),
                                   env={**os.environ, **command.environment}, capture_output=True, text=True,
                                   timeout=timeoutSeconds)
        return completed.returncode, completed.stdout + completed.stderr

    def test_MissingConfigIsRefused(self):
        self.requireDependencies(training=True)
        self.delayDisplay("sasan train reports a configuration that disappeared with status 2")
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            config = Path(folder) / "gone.yaml"
            config.write_text("name: gone\n")
            command = SASANTrainerLogic.trainingCommand(config, Path(folder) / "run")
            config.unlink()
            status, output = self._run(command, 300)
        self.assertEqual(status, 2, output)
        self.delayDisplay("Test passed")

    def test_TinyPresetTrainsAndExports(self):
        self.requireDependencies(training=True)
        self.delayDisplay("Train the tiny phantom preset for a few steps and export the model")
        import tempfile

        from sasan.card import read_card
        from sasan.progress import parse_progress_line

        presets = [p for p in SASANTrainerLogic.presets() if p.stem == "phantom_tiny"]
        if not presets:
            self.skipTest("no phantom_tiny preset in Resources/configs")
        with tempfile.TemporaryDirectory() as folder:
            command = SASANTrainerLogic.trainingCommand(presets[0], Path(folder) / "run", steps=4, device="cpu")
            status, output = self._run(command, 1800)
            self.assertEqual(status, 0, output)
            reports = [parse_progress_line(line) for line in output.splitlines()]
            self.assertEqual([r for r in reports if r is not None][-1].fraction, 1.0, output)
            card = read_card(command.model_file)
            self.assertEqual(len(card.labels), 4, card)
        self.delayDisplay("Test passed")
