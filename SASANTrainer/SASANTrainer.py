"""SASANTrainer: train a SASAN model from a YAML configuration in a background process.

Thin module file: the GUI starts ``SASANTrainerLib/train.py`` with Slicer's command-line Python
(``PythonSlicer``) as a ``QProcess``, shows its log and progress live, and hands the model file it
writes to the SASAN module.  Slicer stays usable meanwhile; closing it stops the training.
"""
import logging
import os
import time
from pathlib import Path
from typing import Optional

import qt
import slicer
import vtk
from SASANSlicerLib.environment import ensure_engine_importable
from SASANTrainerLib.command import TRAIN_SCRIPT, TrainingCommand, training_command
from SASANTrainerLib.training_log import OutputReader, parse_progress
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MODULE_DIR = Path(__file__).resolve().parent
REQUIREMENTS_FILE = MODULE_DIR / "Resources" / "SASANTrainer-requirements.txt"
STOP_GRACE_MS = 10000  # after asking the process to stop, kill it if it is still running


class SASANTrainer(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SASAN Trainer"
        self.parent.categories = ["Image Synthesis"]
        self.parent.dependencies = ["SASANSlicer"]
        self.parent.contributors = ["SASAN for 3D Slicer developers"]
        self.parent.helpText = """
Trains a SASAN model (CT/MRI translation with segmentation) from a YAML configuration, in a
background process: Slicer stays usable, the log and progress show here, and the resulting model file
is offered to the SASAN module. Headless: Slicer --no-main-window --python-script
SASANTrainer/SASANTrainerLib/train.py -- CONFIG.yaml [--resume] [--output DIR].
"""
        self.parent.acknowledgementText = """
Method: D. Tomar et al., "Self-Attentive Spatial Adaptive Normalization for Cross-Modality Domain
Adaptation", IEEE Transactions on Medical Imaging 2021.
"""


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
        self._process = None
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
        ensure_engine_importable(MODULE_DIR)
        from sasan.resources import find_presets

        for preset in find_presets(MODULE_DIR):
            self.ui.presetSelector.addItem(preset.stem, str(preset))
        self.ui.presetSelector.connect("currentIndexChanged(int)", self.onPresetSelected)
        self.ui.startButton.connect("clicked(bool)", self.onStartButton)
        self.ui.useModelButton.connect("clicked(bool)", self.onUseModelButton)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self._process is not None:
            self._process.kill()  # the application is closing: no training left running behind it
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
            self._parameterNode.outputDirectory = Path.home() / "SASAN" / "runs" / time.strftime("run-%Y%m%d-%H%M%S")

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
        if self._process is not None:
            return  # running: the button is Stop
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
        if self._process is not None:
            self.stopTraining()
            return
        from SASANSlicer import ensureDependenciesOrExplain

        if not ensureDependenciesOrExplain(self.logic.ensureDependencies):
            self.ui.statusLabel.text = "Not started: required Python packages are missing."
            return
        parameters = self._parameterNode
        try:
            self._command = training_command(parameters.configPath, parameters.outputDirectory, parameters.resume)
        except ValueError as error:
            slicer.util.errorDisplay(f"Cannot start the training: {error}")
            return
        process = qt.QProcess()
        process.setWorkingDirectory(str(self._command.working_directory))
        process.setProcessChannelMode(qt.QProcess.MergedChannels)
        environment = qt.QProcessEnvironment.systemEnvironment()
        environment.insert("PYTHONUNBUFFERED", "1")
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
        self._stopping = True
        self.ui.startButton.enabled = False
        self.ui.statusLabel.text = "Stopping..."
        process = self._process
        if os.name == "nt":
            process.kill()  # console processes on Windows ignore terminate()
        else:
            process.terminate()
            def killIfStillRunning():
                if process.state() != qt.QProcess.NotRunning:
                    process.kill()

            qt.QTimer.singleShot(STOP_GRACE_MS, killIfStillRunning)

    def onProcessOutput(self) -> None:
        data = self._process.readAllStandardOutput().data()
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        for line in self._reader.feed(text):
            self.showLine(line)

    def showLine(self, line: str) -> None:
        progress = parse_progress(line)
        if progress is None:
            self.appendLog(line)
            return
        self.ui.progressBar.setValue(round(100 * progress.fraction))
        self.ui.statusLabel.text = f"{progress.phase.capitalize()}: step {progress.done} of {progress.total}"

    def appendLog(self, line: str) -> None:
        self.ui.logTextEdit.appendPlainText(line)

    def onProcessError(self, error) -> None:
        if error == qt.QProcess.FailedToStart:
            self.finishRun()
            slicer.util.errorDisplay(
                f"Could not start '{self._command.program}'. Is Slicer's Python (PythonSlicer) installed?")

    def onProcessFinished(self, exitCode: int, exitStatus) -> None:
        for line in self._reader.flush():
            self.showLine(line)
        minutes = (time.monotonic() - self._started) / 60
        stopped = self._stopping
        self.finishRun()
        modelFile = Path(self._command.model_file)
        if exitStatus == qt.QProcess.NormalExit and exitCode == 0 and modelFile.is_file():
            self._modelFile = modelFile
            self.ui.useModelButton.enabled = True
            self.ui.statusLabel.text = f"Finished in {minutes:.1f} min: {modelFile}"
            self.logic.offerModel(modelFile)
        elif stopped:
            self.ui.statusLabel.text = "Stopped. Tick Resume and Start to continue from the last checkpoint."
        else:
            self.ui.statusLabel.text = f"Training failed (exit status {exitCode})."
            slicer.util.errorDisplay(f"Training failed (exit status {exitCode}). The log shows why.")

    def finishRun(self) -> None:
        self._process = None
        self.setRunning(False)

    def setRunning(self, running: bool) -> None:
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
    def ensureDependencies() -> bool:
        """What SASANSlicer needs (torch, engine packages) plus the training-only packages."""
        from SASANSlicer import SASANSlicerLogic

        return SASANSlicerLogic.ensureDependencies() and SASANSlicerLogic.ensurePackages(
            REQUIREMENTS_FILE, "SASAN Trainer")

    @staticmethod
    def offerModel(modelFile: Path) -> None:
        """Make ``modelFile`` the SASAN module's selected model."""
        from SASANSlicer import SASANSlicerLogic

        SASANSlicerLogic().getParameterNode().modelPath = str(modelFile)
        logging.info("SASAN Trainer: model file %s selected in the SASAN module", modelFile)


class SASANTrainerTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: the headless script trains the smallest preset and exports a model file."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_TrainScriptRejectsMissingConfig()
        self.setUp()
        self.test_TinyPresetTrainsAndExports()

    @staticmethod
    def _run(arguments: list, workingDirectory, timeoutSeconds: int) -> tuple:
        """Run Slicer's Python with ``arguments``; (exit status, everything it printed)."""
        import subprocess

        from SASANTrainerLib.command import python_executable

        completed = subprocess.run([python_executable(), *arguments], cwd=str(workingDirectory),
                                   capture_output=True, text=True, timeout=timeoutSeconds)
        return completed.returncode, completed.stdout + completed.stderr

    def test_TrainScriptRejectsMissingConfig(self):
        self.delayDisplay("train.py reports a missing configuration with status 2")
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            status, output = self._run([str(TRAIN_SCRIPT), str(Path(folder) / "none.yaml")], folder, 300)
        self.assertEqual(status, 2, output)
        self.delayDisplay("Test passed")

    def test_TinyPresetTrainsAndExports(self):
        self.delayDisplay("Train the tiny phantom preset for a few steps and export the model")
        import tempfile

        self.assertTrue(SASANTrainerLogic.ensureDependencies())
        from sasan.resources import find_presets

        presets = [p for p in find_presets(MODULE_DIR) if p.stem == "phantom_tiny"]
        if not presets:
            self.skipTest("no phantom_tiny preset in Resources/configs")
        with tempfile.TemporaryDirectory() as folder:
            command = training_command(presets[0], Path(folder) / "run", steps=4, device="cpu")
            status, output = self._run(command.arguments, command.working_directory, 1800)
            self.assertEqual(status, 0, output)
            from SASANSlicerLib.models import read_model_card

            card = read_model_card(command.model_file)
            self.assertEqual(len(card["labels"]), 4, card)
        self.delayDisplay("Test passed")
