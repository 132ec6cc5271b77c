"""SASANSlicer: translate a CT or MR volume to the other modality, segment it, show the attention maps.

Thin module file (Slicer imports it at start-up): Module, parameter node, Widget, Logic and self-test.
Everything that computes or touches the scene lives in ``SASANSlicerLib`` (testable without the
application) and in the ``sasan`` engine, which is imported only when first needed.
"""
import logging
import traceback
from pathlib import Path
from typing import Annotated, Optional

import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from SASANSlicerLib import TranslationLogic, attention_display, environment, model_files, model_trust, sample_data
from SASANSlicerLib.dependencies import (
    ENGINE_REQUIREMENTS,
    ensure_dependencies,
    ensure_dependencies_or_explain,
    require_test_dependencies,
)
from SASANSlicerLib.progress import CancelToken, RunCancelled, progress_text

MODULE_DIR = Path(__file__).resolve().parent
BROWSE = "<browse>"  # item data of the model selector's "Browse..." entry
DOCUMENTATION_URL = "https://github.com/SASAN-for-3D-Slicer/SlicerSASAN#readme"


class SASANSlicer(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SASAN")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Image Synthesis")]
        self.parent.dependencies = []
        self.parent.contributors = ["SASAN for 3D Slicer developers (SASAN-for-3D-Slicer)"]
        self.parent.helpText = _("""
Translates a CT volume into an MRI-like volume or the reverse with a SASAN model
(Self-Attentive Spatial Adaptive Normalization), segments the translated anatomy and shows the
model's attention maps. Results overlay the input exactly. For research, not for diagnosis.
Pick an input volume and a model, then Apply; Apply turns into Cancel while the run goes on.
Train your own models with the SASAN Trainer module.
""") + f'<p><a href="{DOCUMENTATION_URL}">{_("Documentation")}</a></p>'
        self.parent.acknowledgementText = _("""
Method: D. Tomar, M. Lortkipanidze, G. Vray, B. Bozorgtabar, J.-P. Thiran, "Self-Attentive Spatial
Adaptive Normalization for Cross-Modality Domain Adaptation", IEEE Transactions on Medical Imaging 2021.
""")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Phantom CT and MR volumes in the Sample Data module, made locally (no download, no PyTorch).

    ``SampleData.downloadSample(name)`` copies the registered ``file://`` URI and never calls the custom
    downloader, so the files are made here when missing (about a second, once); the Sample Data button's
    custom downloader makes them too, should that have failed.
    """
    import SampleData

    try:
        SASANSlicerLogic.ensureEngine()
        sample_data.prepare_phantom_samples()
    except Exception:
        logging.warning("SASAN: the phantom samples could not be made now; the Sample Data button retries",
                        exc_info=True)
    if hasattr(SampleData.SampleDataLogic, "registerCustomSampleDataCategory"):  # Slicer >= 5.12
        SampleData.SampleDataLogic.registerCustomSampleDataCategory(sample_data.SAMPLE_CATEGORY, _("SASAN"))
    icon = MODULE_DIR / "Resources" / "Icons" / "SASANSlicer.png"
    for source in sample_data.phantom_sample_sources(icon):
        SampleData.SampleDataLogic.registerCustomSampleDataSource(**source, customDownloader=_loadPhantomSample)


def _loadPhantomSample(source):
    """Sample Data button: make the phantom files if missing, then load ``source`` as ``downloadSample`` does."""
    import SampleData

    with slicer.util.tryWithErrorDisplay(_("Could not make the SASAN phantom samples."), waitCursor=True):
        SASANSlicerLogic.ensureEngine()
        sample_data.prepare_phantom_samples()
        return SampleData.SampleDataLogic().downloadFromSource(source)


@parameterNodeWrapper
class SASANSlicerParameterNode:
    """What the user chose; saved with the scene.

    inputVolume - the CT or MR volume to translate.
    modelPath - the model file (.safetensors).
    target - the modality to translate to.
    device - where the networks run ("auto": a CUDA GPU if there is one).
    segment, attention - also make the segmentation / the attention map volumes.
    outputVolume - volume receiving the translation (none: a new volume per run).
    attentionOpacity - opacity of the attention overlay in the slice views.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modelPath: str = ""
    target: Annotated[str, Choice(["MR", "CT"])] = "MR"
    device: Annotated[str, Choice(environment.device_choices())] = "auto"
    segment: bool = True
    attention: bool = False
    outputVolume: vtkMRMLScalarVolumeNode
    attentionOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5


class SASANSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._cancelToken: Optional[CancelToken] = None
        self._shownCardPath = None
        self._card = None  # the selected model file's sasan.card.ModelCard, when it has a usable one

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SASANSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SASANSlicerLogic()

        self.ui.progressBar.setVisible(False)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.modelSelector.connect("currentIndexChanged(int)", self.onModelSelected)
        self.ui.attentionMapSelector.connect("currentIndexChanged(int)", self.onAttentionDisplayChanged)
        self.ui.attentionOpacitySlider.connect("valueChanged(double)", self.onAttentionDisplayChanged)

        self.populateModelSelector()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self._cancelToken is not None:
            self._cancelToken.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        if self._cancelToken is not None:
            self._cancelToken.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume and not firstVolume.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = firstVolume
        if not self._parameterNode.modelPath and self.ui.modelSelector.count > 1:
            self._parameterNode.modelPath = str(self.ui.modelSelector.itemData(0))

    def setParameterNode(self, parameterNode: Optional[SASANSlicerParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self._parameterNode = parameterNode
        if self._parameterNode:
            # The .ui's "SlicerParameterName" dynamic properties bind widgets to parameters.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self.onParameterNodeModified()

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        self.showModelPath()
        self.updateAttentionControls()
        self.updateApplyButton()

    # Model selector: shipped models by name, a model browsed to, "Browse...".

    def populateModelSelector(self) -> None:
        selector = self.ui.modelSelector
        selector.blockSignals(True)
        selector.clear()
        for entry in model_files.find_models(model_files.model_folders(MODULE_DIR)):
            selector.addItem(entry.name, str(entry.path))
            selector.setItemData(selector.count - 1, str(entry.path), qt.Qt.ToolTipRole)
        selector.addItem("Browse...", BROWSE)
        selector.blockSignals(False)

    def showModelPath(self) -> None:
        """Select the parameter node's model in the selector (adding it if browsed to) and show its card."""
        path = self._parameterNode.modelPath if self._parameterNode else ""
        selector = self.ui.modelSelector
        selector.blockSignals(True)
        index = selector.findData(path) if path else -1
        if path and index < 0:
            index = selector.count - 1  # before "Browse..."
            selector.insertItem(index, Path(path).stem, path)
            selector.setItemData(index, path, qt.Qt.ToolTipRole)
        selector.currentIndex = index  # -1 (blank) without a model, so that "Browse..." can be chosen
        selector.blockSignals(False)
        if path != self._shownCardPath:
            self._shownCardPath = path
            self._card = self.logic.readModelCard(path)
            self.ui.modelCardBrowser.setHtml(self.logic.modelCardHtml(path))

    def onModelSelected(self, index: int) -> None:
        if not self._parameterNode:
            return
        data = self.ui.modelSelector.itemData(index)
        if data == BROWSE:
            start = str(Path(self._parameterNode.modelPath).parent) if self._parameterNode.modelPath else ""
            data = qt.QFileDialog.getOpenFileName(
                self.parent, "Choose a SASAN model file", start, "SASAN model files (*.safetensors)"
            )
            if not data:
                self.showModelPath()  # back to the previous choice
                return
        self._parameterNode.modelPath = str(data)
        self.showModelPath()  # also when the path did not change (no Modified event then)

    # Apply / Cancel

    def updateApplyButton(self) -> None:
        if self._cancelToken is not None:
            return  # running: the button is Cancel
        parameters = self._parameterNode
        problem = None
        if not parameters or not parameters.inputVolume:
            problem = "Select an input volume."
        elif not parameters.modelPath or not Path(parameters.modelPath).is_file():
            problem = "Select a model file."
        elif self._card is None:
            problem = "The model file is not usable: the model card says why."
        else:
            from sasan.card import request_problem  # importable: the card was read

            problem = request_problem(self._card, parameters.target, segment=parameters.segment,
                                      attention=parameters.attention)
        self.ui.applyButton.enabled = problem is None
        self.ui.applyButton.toolTip = problem or f"Translate the input to {parameters.target}."

    def setRunning(self, running: bool) -> None:
        self.ui.applyButton.text = "Cancel" if running else "Apply"
        self.ui.applyButton.toolTip = "Stop after the current batch; nothing is added." if running else ""
        self.ui.applyButton.enabled = True
        for widget in (self.ui.inputsCollapsibleButton, self.ui.outputsCollapsibleButton,
                       self.ui.attentionCollapsibleButton):
            widget.enabled = not running
        self.ui.progressBar.setVisible(running)
        self.ui.progressBar.setValue(0)
        if not running:
            self.updateApplyButton()

    def showProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.setValue(round(100 * fraction))
        self.ui.statusLabel.text = progress_text(fraction, message)

    def onApplyButton(self) -> None:
        if self._cancelToken is not None:
            self._cancelToken.cancel()
            self.ui.applyButton.enabled = False
            self.ui.statusLabel.text = "Cancelling after the current batch..."
            return
        if not ensure_dependencies_or_explain(self.logic.ensureDependencies):
            self.ui.statusLabel.text = "Not started: required Python packages are missing."
            return
        parameters = self._parameterNode
        if not self.confirmModelUse(Path(parameters.modelPath)):
            self.ui.statusLabel.text = "Not started: the model was not accepted."
            return
        self._cancelToken = CancelToken()
        self.setRunning(True)
        try:
            result = self.logic.process(
                parameters.inputVolume, parameters.modelPath, parameters.target, parameters.device,
                parameters.segment, parameters.attention, parameters.outputVolume,
                progress=self.showProgress, cancel=self._cancelToken,
            )
        except RunCancelled:
            self.ui.statusLabel.text = "Cancelled: nothing was added."
        except Exception as error:
            if self._cancelToken.cancelled:
                self.ui.statusLabel.text = "Cancelled: nothing was added."
            else:
                logging.exception("SASAN translation failed")
                self.ui.statusLabel.text = "Failed: nothing was added."
                slicer.util.errorDisplay(f"Translation failed: {error}", detailedText=traceback.format_exc())
        else:
            slicer.util.setSliceViewerLayers(background=result.volumeNode, fit=True)
            self.ui.statusLabel.text = result.summary()
            if result.attentionNodes:
                self.ui.attentionCollapsibleButton.collapsed = False
        finally:
            self._cancelToken = None
            self.setRunning(False)
            self.updateAttentionControls()

    def confirmModelUse(self, modelPath: Path) -> bool:
        """Before the first use of a model from outside SASAN: show its card, ask, remember a yes."""
        consent = model_trust.ModelConsent(model_files.model_folders(MODULE_DIR), qt.QSettings())
        if self._card is None or not consent.needs_confirmation(modelPath, self._card):
            return True
        text = model_trust.confirmation_text(self._card, modelPath)
        if not slicer.util.confirmYesNoDisplay(text, windowTitle="SASAN: a model from outside SASAN"):
            return False
        from sasan.card import ModelFileError  # importable: the card was read

        try:
            consent.accept(modelPath, self._card)
        except ModelFileError as error:
            slicer.util.errorDisplay(f"This model cannot be used: {error}")
            return False
        return True

    # Attention overlay

    def updateAttentionControls(self) -> None:
        """Offer the current input's attention maps: hidden, all maps (overview), or map k."""
        inputVolume = self._parameterNode.inputVolume if self._parameterNode else None
        choices = self.logic.attentionChoices(inputVolume)
        selector = self.ui.attentionMapSelector
        wanted = [text for text, node in choices]
        if [selector.itemText(i) for i in range(selector.count)] != wanted:
            selector.blockSignals(True)
            selector.clear()
            for text in wanted:
                selector.addItem(text)
            selector.blockSignals(False)
        self.ui.attentionMapSelector.enabled = len(choices) > 1
        self.ui.attentionOpacitySlider.enabled = len(choices) > 1

    def onAttentionDisplayChanged(self, *unused) -> None:
        inputVolume = self._parameterNode.inputVolume if self._parameterNode else None
        choices = self.logic.attentionChoices(inputVolume)
        index = self.ui.attentionMapSelector.currentIndex
        node = choices[index][1] if 0 <= index < len(choices) else None
        self.logic.showAttention(node, self.ui.attentionOpacitySlider.value)


class SASANSlicerLogic(ScriptedLoadableModuleLogic):
    """Runs translations for the widget, for scripts and for tests (no GUI needed, except to confirm
    package installation)."""

    def getParameterNode(self):
        return SASANSlicerParameterNode(super().getParameterNode())

    @staticmethod
    def ensureEngine() -> Path:
        """Make the ``sasan`` engine importable (installed beside the modules, or the source tree)."""
        return environment.ensure_engine_importable(MODULE_DIR)

    @staticmethod
    def ensureDependencies() -> bool:
        """torch from the PyTorch extension, other packages by pip, each after the user agrees."""
        return ensure_dependencies("SASAN")

    @staticmethod
    def readModelCard(modelPath: str):
        """The model file's validated card (``sasan.card.ModelCard``), or None when it has no usable one."""
        if not modelPath:
            return None
        SASANSlicerLogic.ensureEngine()
        from sasan.card import ModelFileError, read_card

        try:
            return read_card(modelPath)
        except ModelFileError:
            return None

    @staticmethod
    def modelCardHtml(modelPath: str) -> str:
        if not modelPath:
            return "<p>No model selected.</p>"
        SASANSlicerLogic.ensureEngine()
        from sasan.card import ModelFileError, read_card

        try:
            return model_files.model_card_html(read_card(modelPath), Path(modelPath).name)
        except ModelFileError as error:
            return f"<p><b>Not usable:</b> {error}</p>"

    @staticmethod
    def attentionChoices(inputVolume) -> list:
        """(text, node) for the attention selector: hidden, all maps, map 1..K of ``inputVolume``'s current maps."""
        if inputVolume is None:
            return attention_display.attention_choices([], None)
        return attention_display.attention_choices(*attention_display.find_attention_nodes(inputVolume))

    @staticmethod
    def showAttention(node, opacity: float) -> None:
        attention_display.show_attention(node, opacity, slicer.mrmlScene)

    def process(self, inputVolume, modelPath: str, target: str = "MR", device: str = "auto", segment: bool = True,
                attention: bool = True, outputVolume=None, progress=None, cancel=None):
        """``TranslationLogic.translate`` (see there; returns its ``TranslationNodes``), with Qt events processed
        after every progress report, so that the GUI stays responsive and a Cancel click arrives."""
        translation = TranslationLogic(processEvents=lambda: slicer.app.processEvents())
        return translation.translate(inputVolume, modelPath, target, device, segment, attention, progress, cancel,
                                     outputVolumeNode=outputVolume)

    def loadPhantomSample(self, modality: str):
        """Load the phantom sample volume of ``modality`` ("CT"/"MR"), generating it on first use."""
        self.ensureEngine()
        path = sample_data.phantom_sample_path(modality)
        return slicer.util.loadVolume(str(path), {"name": sample_data.PHANTOM_SAMPLES[modality]})


class SASANSlicerTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Developer mode > Reload and Test, or ctest).

    Each test starts with ``requireDependencies``, so the tests pass in any order (ctest runs them
    alphabetically, each on its own) and never install packages while Slicer runs tests.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        import unittest

        for test in (self.test_RefusesVectorVolume, self.test_SampleDataLoadsPhantom, self.test_PhantomTranslation,
                     self.test_CancelAddsNothing):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as reason:
                self.delayDisplay(f"{test.__name__} skipped: {reason}")

    def requireDependencies(self, translation: bool) -> None:
        """The engine, and with ``translation`` what a translation imports (see ``requireTestDependencies``)."""
        SASANSlicerLogic.ensureEngine()
        require_test_dependencies(self, [ENGINE_REQUIREMENTS] if translation else [], torch=translation)

    def _shippedModel(self):
        found = model_files.find_models(model_files.model_folders(MODULE_DIR))
        if not found:
            self.skipTest("no model file in Resources/Models")
        return found[0].path

    def test_RefusesVectorVolume(self):
        self.requireDependencies(translation=False)
        self.delayDisplay("A colour volume is refused with a clear message")
        import numpy as np
        from SASANSlicerLib.nodes import UnsupportedVolumeError

        logic = SASANSlicerLogic()
        colour = slicer.util.addVolumeFromArray(np.zeros((4, 5, 6, 3), np.uint8), name="photo",
                                                nodeClassName="vtkMRMLVectorVolumeNode")
        before = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaises(UnsupportedVolumeError):  # refused before the model file is even opened
            logic.process(colour, "never-opened.safetensors", "MR")
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)
        self.delayDisplay("Test passed")

    def test_SampleDataLoadsPhantom(self):
        self.requireDependencies(translation=False)
        self.delayDisplay("SampleData.downloadSample loads the phantom CT without the Sample Data button")
        import SampleData

        registerSampleData()
        volume = SampleData.downloadSample("SASANPhantomCT")
        self.assertTrue(volume is not None and volume.IsA("vtkMRMLScalarVolumeNode"))
        self.assertEqual(volume.GetName(), "SASANPhantomCT")
        import SimpleITK as sitk  # bundled with Slicer

        made = sitk.ReadImage(str(sample_data.phantom_sample_file("CT")))
        self.assertEqual(volume.GetImageData().GetDimensions(), made.GetSize())
        self.delayDisplay("Test passed")

    def test_PhantomTranslation(self):
        self.requireDependencies(translation=True)
        self.delayDisplay("Translate the CT phantom to MR, with segmentation and attention maps")
        logic = SASANSlicerLogic()
        modelPath = self._shippedModel()
        card = logic.readModelCard(str(modelPath))
        inputVolume = logic.loadPhantomSample("CT")
        segment = "MR" in card.segmenters
        from sasan.card import request_problem

        self.assertIsNone(request_problem(card, "MR", segment=segment, attention=True))
        fractions = []
        result = logic.process(inputVolume, str(modelPath), "MR", "auto", segment=segment, attention=True,
                               progress=lambda fraction, message: fractions.append(fraction))
        from SASANSlicerLib.nodes import volume_from_node

        translated, source = volume_from_node(result.volumeNode), volume_from_node(inputVolume)
        self.assertTrue(translated.same_geometry(source))
        self.assertEqual(result.volumeNode.GetName(), "SASANPhantomCT (translated to MR)")
        if segment:
            segmentation = result.segmentationNode.GetSegmentation()
            names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
            self.assertEqual(names, [label["name"] for label in card.labels])
        self.assertEqual(len(result.attentionNodes), card.model_config.num_maps)
        for node in result.attentionNodes:  # attention near 0 leaves the input visible
            self.assertTrue(node.GetDisplayNode().GetApplyThreshold())
        self.assertTrue(fractions and max(fractions) <= 1.0)
        self.delayDisplay("Test passed")

    def test_CancelAddsNothing(self):
        self.requireDependencies(translation=True)
        self.delayDisplay("A cancelled run adds nothing")
        logic = SASANSlicerLogic()
        modelPath = self._shippedModel()
        inputVolume = logic.loadPhantomSample("CT")
        before = slicer.mrmlScene.GetNumberOfNodes()
        token = CancelToken()
        with self.assertRaises(RunCancelled):
            logic.process(inputVolume, str(modelPath), "MR", progress=lambda f, m: token.cancel(), cancel=token)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)
        self.delayDisplay("Test passed")
