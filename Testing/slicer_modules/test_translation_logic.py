"""The public API, ``TranslationLogic().translate(...)``, and the module's ``start``/``poll``/``cancel``, on a real
MRML scene with a real (tiny) model file, running the engine as the module does: ``python -m sasan translate`` in a
child process, built by the module's own command builder.  This test's Python stands in for ``PythonSlicer``, or a
stand-in ``PythonSlicer`` launcher on the PATH starts it as its own child, as Slicer's launcher does.

The model has random weights: what is checked is what the API promises, not image quality — results on the
input's exact grid, voxels and segments equal to the in-process engine's own output, attention overlays that show
only where a map attends, a cancel or any refusal leaving the scene exactly as it was with no process and no
temporary folder left, and torch never imported by the calling process.
"""
import inspect
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="the MRML glue needs the slicer-core wheel")
psutil = pytest.importorskip("psutil")
inference = pytest.importorskip("sasan.inference")

import vtk  # noqa: E402
from fixtures import tiny_card  # noqa: E402
from fixtures import write_tiny_model as write_model  # noqa: E402
from SASANSlicerLib import CancelToken, RunCancelled, TranslationLogic, TranslationNodes, environment  # noqa: E402
from SASANSlicerLib.attention import ATTENTION_COLOR_NODE_IDS, first_color_node_id  # noqa: E402
from SASANSlicerLib.attention_display import LOW_ATTENTION, attention_choices, find_attention_nodes  # noqa: E402
from SASANSlicerLib.hierarchy import item_of, subject_hierarchy  # noqa: E402
from SASANSlicerLib.nodes import UnsupportedVolumeError, node_from_volume, volume_from_node  # noqa: E402
from SASANSlicerLib.progress import progress_text  # noqa: E402
from SASANSlicerLib.translation_process import TranslationError  # noqa: E402
from slicer_glue_helpers import (  # noqa: E402
    hierarchy_items,
    node_ids,
    rotation,
    show_as_sequence_frame,
    write_tiny_model,
)
from synthetic_scans import chest_ct, head_domain  # noqa: E402

from sasan.card import read_card  # noqa: E402
from sasan.data.volume import Volume  # noqa: E402
from sasan.domain.check import check_domain  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHAPE = (5, 12, 9)  # (z, y, x): non-square in-plane
LONG_SHAPE = (2000, 32, 32)  # seconds of work for the child: a cancel must end it, it cannot finish meanwhile
# A stand-in for Slicer's PythonSlicer: a launcher that runs the real Python as its own child and waits for it.
LAUNCHER = textwrap.dedent("""\
    #!{python}
    import subprocess, sys
    sys.exit(subprocess.call([{python!r}, *sys.argv[1:]]))
""")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture
def private_temp(tmp_path, monkeypatch) -> Path:
    """The folder runs make their temporary folder in (to check that none is left)."""
    folder = tmp_path / "temp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def python_slicer_launcher(tmp_path, monkeypatch) -> Path:
    """A ``PythonSlicer`` launcher first on the PATH, where the module looks for Slicer's Python."""
    folder = tmp_path / "bin"
    folder.mkdir()
    launcher = folder / "PythonSlicer"
    launcher.write_text(LAUNCHER.format(python=sys.executable))
    launcher.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    return launcher


def oblique_ct(shape=SHAPE) -> Volume:
    hu = np.random.default_rng(0).normal(40.0, 80.0, shape).astype(np.float32)
    return Volume(hu, spacing=(0.8, 1.1, 2.5), origin=(-20.0, 33.0, 4.5), direction=rotation((8, -5, 14)))


def ct_in_a_study(scene, shape=SHAPE):
    """The input volume inside a study folder of the subject hierarchy."""
    node = node_from_volume(oblique_ct(shape), "patient CT", scene)
    hierarchy = subject_hierarchy(scene)
    study = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), "study")
    hierarchy.SetItemParent(item_of(node), study)
    return node


def ijk_to_ras(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def scene_state(scene) -> tuple:
    return node_ids(scene), scene.GetNumberOfNodes(), hierarchy_items(scene)


def translation_processes() -> list:
    """(pid, parent pid, command line) of every ``sasan translate`` process under this one."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            command_line = " ".join(process.cmdline())
            if "-m sasan translate" in command_line:
                found.append((process.pid, process.ppid(), command_line))
        except psutil.NoSuchProcess:
            continue
    return found


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_contract_is_importable_with_its_exact_signature():
    for method in (TranslationLogic.translate, TranslationLogic.start):
        parameters = inspect.signature(method).parameters
        assert [(name, p.default) for name, p in parameters.items()][:9] == [
            ("self", inspect.Parameter.empty), ("inputVolumeNode", inspect.Parameter.empty),
            ("modelPath", inspect.Parameter.empty), ("target", "MR"), ("device", "auto"), ("segment", True),
            ("attention", True), ("progress", None), ("cancel", None)]
        assert [(name, p.kind) for name, p in list(parameters.items())[9:]] == [
            ("outputVolumeNode", inspect.Parameter.KEYWORD_ONLY)]


def test_results_overlay_an_oblique_anisotropic_input_and_equal_the_engines_own_output(scene, model_file,
                                                                                      private_temp):
    source = ct_in_a_study(scene)
    reports = []
    result = TranslationLogic().translate(source, model_file, "MR", device="cpu", segment=True, attention=True,
                                          progress=lambda fraction, message: reports.append((fraction, message)))
    assert isinstance(result, TranslationNodes)
    # On the input's exact grid: oblique, anisotropic, bit for bit.
    expected = ijk_to_ras(source)
    spacing = np.linalg.norm(expected[:3, :3], axis=0)
    assert len(set(np.round(spacing, 6))) == 3 and np.all(np.abs(expected[:3, :3] / spacing) < 0.999)
    for node in (result.volumeNode, *result.attentionNodes, result.attentionOverviewNode):
        assert np.array_equal(ijk_to_ras(node), expected), node.GetName()
        assert node.GetImageData().GetDimensions() == SHAPE[::-1]
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    slicer.modules.segmentations.logic().ExportAllSegmentsToLabelmapNode(result.segmentationNode, labelmap)
    assert np.allclose(ijk_to_ras(labelmap), expected, atol=1e-9)

    # Voxel for voxel what the engine computes in this process on the same input.
    engine = inference.translate_volume(oblique_ct(), model_file, "MR", device="cpu", segment=True, attention=True)
    np.testing.assert_array_equal(volume_from_node(result.volumeNode).array, engine.translated.array)
    classes = engine.segmentation.array
    assert set(np.unique(classes)) == {0, 1, 2}, "the tiny model must segment every structure somewhere"
    segmentation, card = result.segmentationNode.GetSegmentation(), read_card(model_file)
    assert segmentation.GetNumberOfSegments() == len(card.labels)
    for index, label in enumerate(card.labels):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        assert segment.GetName() == label["name"] and segment.GetColor() == pytest.approx(label["color"])
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(result.segmentationNode, segment_id, source)
        np.testing.assert_array_equal(mask.astype(bool), classes == index + 1, err_msg=label["name"])

    # Attention overlays: heat colours, a fixed window, attention near 0 thresholded away.
    heat = first_color_node_id(scene, ATTENTION_COLOR_NODE_IDS)
    assert [node.GetName() for node in result.attentionNodes] == ["patient CT attention 1", "patient CT attention 2"]
    for node, engine_map in zip(result.attentionNodes, engine.attention):
        np.testing.assert_array_equal(volume_from_node(node).array, engine_map.array)
        display = node.GetDisplayNode()
        assert heat is not None and display.GetColorNodeID() == heat
        assert not display.GetAutoWindowLevel() and (display.GetWindow(), display.GetLevel()) == (255.0, 127.5)
        assert display.GetApplyThreshold()
        assert (display.GetLowerThreshold(), display.GetUpperThreshold()) == (math.ceil(255 * LOW_ATTENTION), 255)
    overview = result.attentionOverviewNode
    assert overview.IsA("vtkMRMLLabelMapVolumeNode")
    assert overview.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeLabels"
    assert choices_of(source) == [("Hidden", None), ("All maps (strongest per voxel)", overview),
                                  ("Map 1", result.attentionNodes[0]), ("Map 2", result.attentionNodes[1])]

    # Named beside the input; progress parsed from the child's lines; how it went.
    assert result.volumeNode.GetName() == "patient CT (translated to MR)"
    assert result.segmentationNode.GetName() == "patient CT segmentation"
    assert result.device == "cpu" and result.notes == [] and result.seconds > 0
    assert result.summary() == (f"Done in {result.seconds:.0f} s on cpu: 'patient CT (translated to MR)', "
                                "'patient CT segmentation', 2 attention maps.")
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("translated 5 of 5 slices" in message for _, message in reports)
    assert list(private_temp.iterdir()) == []


def choices_of(source) -> list:
    """What the module's attention selector offers for ``source``."""
    return attention_choices(*find_attention_nodes(source))


@pytest.mark.parametrize("caller", ["console, Python stands in for PythonSlicer", "widget, PythonSlicer launcher"])
def test_cancel_at_the_first_progress_report_ends_the_whole_tree_and_leaves_the_scene_as_it_was(
        scene, model_file, private_temp, request, caller):
    """The console's ``cancel`` callable, or the widget's Cancel button (``run.cancel()``), after the first report."""
    launcher = "launcher" in caller
    if launcher:
        request.getfixturevalue("python_slicer_launcher")
    source = ct_in_a_study(scene, LONG_SHAPE)
    before = scene_state(scene)
    tree, token = [], CancelToken()

    def first_report(fraction, message):
        if not tree:
            tree.extend(translation_processes())
            token.cancel()

    if launcher:  # as the widget does: start, poll from a timer, Cancel
        run = TranslationLogic().start(source, model_file, "MR", device="cpu", progress=first_report)
        deadline = time.monotonic() + 120
        while not token.cancelled and time.monotonic() < deadline:
            assert run.poll() is None
            time.sleep(0.05)
        run.cancel()
        with pytest.raises(RunCancelled):
            run.poll()
    else:
        with pytest.raises(RunCancelled):
            TranslationLogic().translate(source, model_file, "MR", device="cpu", progress=first_report, cancel=token)
    ((started_pid, _, started),) = [entry for entry in tree if entry[1] == os.getpid()]
    if launcher:  # PythonSlicer, and the Python it started
        ((_, _, worker),) = [entry for entry in tree if entry[1] == started_pid]
        assert len(tree) == 2 and "bin/PythonSlicer -u -m sasan translate" in started, tree
    else:
        assert len(tree) == 1, tree
        worker = started
    assert worker.startswith(f"{sys.executable} -u -m sasan translate"), tree
    assert all(gone(pid) for pid, _, _ in tree), tree
    assert scene_state(scene) == before
    assert list(private_temp.iterdir()) == []


def test_the_calling_process_never_imports_torch(model_file, tmp_path):
    """Run in a fresh Python, so that no other test's import of torch can hide one."""
    script = textwrap.dedent(f"""
        import math, sys, types
        sys.path[:0] = [{str(HERE)!r}, {str(ROOT / "SASANSlicer")!r}]
        import slicer
        from SASANSlicerLib.standalone import attach_module_logics
        scene = slicer.mrmlScene = slicer.vtkMRMLScene()
        logics = attach_module_logics(scene)
        slicer.modules = types.SimpleNamespace(**{{name: types.SimpleNamespace(logic=lambda l=logic: l)
                                                  for name, logic in logics.items()}})
        import numpy as np
        from SASANSlicerLib import TranslationLogic
        from SASANSlicerLib.attention_display import LOW_ATTENTION
        from SASANSlicerLib.nodes import node_from_volume
        from sasan.data.volume import Volume
        volume = node_from_volume(Volume(np.random.default_rng(0).normal(40, 80, (4, 10, 8)).astype(np.float32),
                                         spacing=(0.8, 1.1, 2.5)), "CT", scene)
        result = TranslationLogic().translate(volume, {str(model_file)!r}, target="MR", device="cpu", segment=True,
                                              attention=True)
        assert "torch" not in sys.modules, "torch was imported by the calling process"
        assert result.segmentationNode is not None and len(result.attentionNodes) == 2
        for node in result.attentionNodes:
            display = node.GetDisplayNode()
            assert display.GetApplyThreshold() and display.GetLowerThreshold() == math.ceil(255 * LOW_ATTENTION)
        print("no torch here")
    """)
    environment_variables = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                               env=environment_variables, cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "no torch here" in completed.stdout


def no_gpu(scene, tmp_path, monkeypatch):
    if inference_sees_a_gpu():
        pytest.skip("this machine has a CUDA GPU")
    return ct_in_a_study(scene), {"device": "cuda"}


def inference_sees_a_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def two_dimensional(scene, tmp_path, monkeypatch):
    return node_from_volume(Volume(np.zeros((1, 12, 9), np.float32)), "one slice", scene), {}


def frame_of_a_sequence(scene, tmp_path, monkeypatch):
    frame = ct_in_a_study(scene)
    show_as_sequence_frame(scene, frame)
    return frame, {}


def colour_volume(scene, tmp_path, monkeypatch):
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "colour photo")
    slicer.util.updateVolumeFromArray(node, np.zeros((4, 5, 6, 3), np.uint8))
    return node, {}


def direction_not_offered(scene, tmp_path, monkeypatch):
    return ct_in_a_study(scene), {"target": "CT", "segment": False}


def other_modalities(scene, tmp_path, monkeypatch):
    path = write_tiny_model(tmp_path / "t1_t2.safetensors", ("T1", "T2"), (("T1", "T2"),), ("T2",))
    return ct_in_a_study(scene), {"modelPath": path}


def without_pytorch(scene, tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "torch_problem", lambda *arguments: "SASAN needs PyTorch 2.5 or newer, ...")
    return ct_in_a_study(scene), {}


REFUSALS = {  # case: (make, error type, message); all but "no GPU" are refused before a process starts
    "no GPU": (no_gpu, TranslationError, r"^no GPU available: PyTorch sees no CUDA device"),
    "2D volume": (two_dimensional, UnsupportedVolumeError, r"'one slice'.* is 2D \(9 x 12 x 1 voxels\)"),
    "4D volume": (frame_of_a_sequence, UnsupportedVolumeError, r"one frame of the 4D sequence shown by 'cine browser'"),
    "vector volume": (colour_volume, UnsupportedVolumeError, r"'colour photo'.* several values per voxel"),
    "direction not offered": (direction_not_offered, TranslationError,
                              r"does not translate to CT \(it offers CT -> MR\)"),
    "model for other modalities": (other_modalities, TranslationError,
                                   r"does not translate to MR \(it offers T1 -> T2\)"),
    "no PyTorch": (without_pytorch, ImportError, r"^SASAN needs PyTorch 2.5 or newer"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_each_error_says_what_is_wrong_once_and_adds_nothing(scene, model_file, monkeypatch, tmp_path, private_temp,
                                                            case):
    make, error_type, message = REFUSALS[case]
    source, options = make(scene, tmp_path, monkeypatch)
    arguments = {"modelPath": model_file, "device": "cpu", **options}
    before = scene_state(scene)
    with pytest.raises(error_type, match=message) as raised:
        TranslationLogic().translate(source, **arguments)
    assert "\n" not in str(raised.value) and len(str(raised.value)) < 300
    assert scene_state(scene) == before
    assert translation_processes() == []
    assert list(private_temp.iterdir()) == []


def test_the_output_volume_receives_the_translation_and_must_not_be_the_input(scene, model_file):
    source = ct_in_a_study(scene)
    output = node_from_volume(Volume(np.zeros((2, 2, 2), np.float32)), "chosen output", scene)
    before = node_ids(scene)
    with pytest.raises(ValueError, match="must not be the input"):
        TranslationLogic().translate(source, model_file, outputVolumeNode=source)
    assert node_ids(scene) == before
    result = TranslationLogic().translate(source, model_file, device="cpu", segment=False, attention=False,
                                          outputVolumeNode=output)
    assert result.volumeNode is output and output.GetName() == "chosen output"
    assert np.array_equal(ijk_to_ras(output), ijk_to_ras(source))
    assert result.segmentationNode is None and result.attentionNodes == []
    assert node_ids(scene) == before


def test_an_input_unlike_the_models_training_scans_is_translated_with_the_engines_warning_shown(scene, tmp_path,
                                                                                                 private_temp):
    """The child's input check reaches the user in its own words: first in the status line, first in the notes."""
    model = write_model(tmp_path / "fingerprinted.safetensors", seed=0, domain=head_domain(tiny_card()))
    chest = node_from_volume(chest_ct(0), "chest CT", scene)
    result = TranslationLogic().translate(chest, model, "MR", device="cpu", segment=False, attention=False)
    engine = check_domain(chest_ct(0), read_card(model), "CT")
    assert engine.warning.startswith("the input does not look like the head CT scans this model was trained on")
    assert result.warning == engine.warning and result.notes == [engine.warning]
    assert result.summary().startswith(f"Warning: {engine.warning}. Done in ")
    assert list(private_temp.iterdir()) == []


def test_progress_text():
    assert progress_text(0.154, "slice 12 of 80") == "Translating: 15% (slice 12 of 80)"
    assert progress_text(1.0) == "Translating: 100%"
