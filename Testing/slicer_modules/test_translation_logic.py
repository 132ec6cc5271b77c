"""The public API, ``TranslationLogic().translate(...)``, on a real MRML scene with a real (tiny) model file.

The model has random weights: what is checked is what the API promises, not image quality — results on
the input's exact grid, segments and voxels equal to the engine's own output, attention overlays with
their colour table, a cancel or any refusal leaving the scene exactly as it was, and a GPU running out
of memory handled by the engine's fallback, reported, with the results added once.
"""
import inspect

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="the MRML glue needs the slicer-core wheel")
torch = pytest.importorskip("torch")
inference = pytest.importorskip("sasan.inference")

import vtk  # noqa: E402
from SASANSlicerLib import CancelToken, RunCancelled, TranslationLogic, TranslationNodes  # noqa: E402
from SASANSlicerLib.attention import ATTENTION_COLOR_NODE_IDS, first_color_node_id  # noqa: E402
from SASANSlicerLib.attention_display import attention_choices, find_attention_nodes  # noqa: E402
from SASANSlicerLib.hierarchy import item_of, subject_hierarchy  # noqa: E402
from SASANSlicerLib.nodes import UnsupportedVolumeError, node_from_volume, volume_from_node  # noqa: E402
from slicer_glue_helpers import hierarchy_items, node_ids, rotation, show_as_sequence_frame, write_tiny_model  # noqa: E402

import sasan.inference.translation  # noqa: E402
import sasan.runtime  # noqa: E402
from sasan.card import read_card  # noqa: E402
from sasan.data.volume import Volume  # noqa: E402
from sasan.inference.prepared import PreparedNetworks  # noqa: E402

SHAPE = (5, 12, 9)  # (z, y, x): non-square in-plane


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(autouse=True)
def _one_engine_thread(monkeypatch):
    """The engine picks its threads from the machine's load; pin them so that two runs compute identically."""
    monkeypatch.setattr(sasan.runtime, "free_cpu_cores", lambda: 1)


def oblique_ct() -> Volume:
    hu = np.random.default_rng(0).normal(40.0, 80.0, SHAPE).astype(np.float32)
    return Volume(hu, spacing=(0.8, 1.1, 2.5), origin=(-20.0, 33.0, 4.5), direction=rotation((8, -5, 14)))


def ct_in_a_study(scene):
    """The input volume inside a study folder of the subject hierarchy."""
    node = node_from_volume(oblique_ct(), "patient CT", scene)
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


def test_the_contract_is_importable_with_its_exact_signature():
    parameters = inspect.signature(TranslationLogic.translate).parameters
    assert [(name, p.default) for name, p in parameters.items()][:9] == [
        ("self", inspect.Parameter.empty), ("inputVolumeNode", inspect.Parameter.empty),
        ("modelPath", inspect.Parameter.empty), ("target", "MR"), ("device", "auto"), ("segment", True),
        ("attention", True), ("progress", None), ("cancel", None)]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(parameters.values())[9:])


def test_results_overlay_an_oblique_anisotropic_input_exactly(scene, model_file):
    source = ct_in_a_study(scene)
    reports = []
    result = TranslationLogic().translate(source, model_file, "MR", device="cpu",
                                          progress=lambda fraction, message: reports.append((fraction, message)))
    assert isinstance(result, TranslationNodes)
    expected = ijk_to_ras(source)
    spacing = np.linalg.norm(expected[:3, :3], axis=0)
    direction = expected[:3, :3] / spacing
    assert len(set(np.round(spacing, 6))) == 3 and np.all(np.abs(direction) < 0.999)  # oblique, anisotropic
    for node in (result.volumeNode, *result.attentionNodes, result.attentionOverviewNode):
        assert np.array_equal(ijk_to_ras(node), expected), node.GetName()
        assert node.GetImageData().GetDimensions() == SHAPE[::-1]
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    slicer.modules.segmentations.logic().ExportAllSegmentsToLabelmapNode(result.segmentationNode, labelmap)
    assert np.allclose(ijk_to_ras(labelmap), expected, atol=1e-9)
    assert result.volumeNode.GetName() == "patient CT (translated to MR)"
    assert result.segmentationNode.GetName() == "patient CT segmentation"
    assert result.device == "cpu" and result.notes == [] and result.seconds > 0
    assert result.summary() == (f"Done in {result.seconds:.0f} s on cpu: 'patient CT (translated to MR)', "
                                "'patient CT segmentation', 2 attention maps.")
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("translated 5 of 5 slices" in message for _, message in reports)


def test_segments_and_voxels_equal_the_engines_own_output(scene, model_file):
    source = ct_in_a_study(scene)
    result = TranslationLogic().translate(source, model_file, "MR", device="cpu")
    engine = inference.translate_volume(oblique_ct(), model_file, "MR", device="cpu")
    classes = engine.segmentation.array
    assert set(np.unique(classes)) == {0, 1, 2}, "the tiny model must segment every structure somewhere"
    segmentation = result.segmentationNode.GetSegmentation()
    card = read_card(model_file)
    assert segmentation.GetNumberOfSegments() == len(card.labels)
    for index, label in enumerate(card.labels):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        assert segment.GetName() == label["name"]
        assert segment.GetColor() == pytest.approx(label["color"])
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(result.segmentationNode, segment_id, source)
        np.testing.assert_array_equal(mask.astype(bool), classes == index + 1, err_msg=label["name"])
    np.testing.assert_array_equal(volume_from_node(result.volumeNode).array, engine.translated.array)


def test_attention_maps_are_overlays_with_their_colour_table(scene, model_file):
    source = ct_in_a_study(scene)
    result = TranslationLogic().translate(source, model_file, "MR", device="cpu", segment=False)
    engine = inference.translate_volume(oblique_ct(), model_file, "MR", device="cpu", segment=False)
    heat = first_color_node_id(scene, ATTENTION_COLOR_NODE_IDS)
    assert heat is not None and result.segmentationNode is None
    assert [node.GetName() for node in result.attentionNodes] == ["patient CT attention 1", "patient CT attention 2"]
    for node, engine_map in zip(result.attentionNodes, engine.attention):
        display = node.GetDisplayNode()
        assert display.GetColorNodeID() == heat
        assert not display.GetAutoWindowLevel() and (display.GetWindow(), display.GetLevel()) == (255.0, 127.5)
        np.testing.assert_array_equal(volume_from_node(node).array, engine_map.array)
    overview = result.attentionOverviewNode
    assert overview.IsA("vtkMRMLLabelMapVolumeNode")
    assert overview.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeLabels"
    assert set(np.unique(volume_from_node(overview).array)) <= {0, 1, 2}
    # What the module's attention selector offers for this input, and what each entry shows.
    choices = attention_choices(*find_attention_nodes(source))
    assert choices == [("Hidden", None), ("All maps (strongest per voxel)", overview),
                       ("Map 1", result.attentionNodes[0]), ("Map 2", result.attentionNodes[1])]


@pytest.mark.parametrize("kind", ["callable", "CancelToken"])
def test_cancel_at_half_way_leaves_the_scene_exactly_as_it_was(scene, model_file, kind):
    source = ct_in_a_study(scene)
    before = scene_state(scene)
    token = CancelToken()
    cancel = token if kind == "CancelToken" else (lambda: token.cancelled)
    reports = []

    def progress(fraction, message):
        reports.append(fraction)
        if fraction >= 0.5:
            token.cancel()

    with pytest.raises(RunCancelled):
        TranslationLogic().translate(source, model_file, "MR", device="cpu", progress=progress, cancel=cancel)
    assert reports[-1] == 0.5  # stopped at the first report past half-way, between two batches
    assert scene_state(scene) == before


def no_gpu(monkeypatch, scene):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return ct_in_a_study(scene), {"device": "cuda"}


def two_dimensional(monkeypatch, scene):
    return node_from_volume(Volume(np.zeros((1, 12, 9), np.float32)), "one slice", scene), {}


def frame_of_a_sequence(monkeypatch, scene):
    frame = ct_in_a_study(scene)
    show_as_sequence_frame(scene, frame)
    return frame, {}


def colour_volume(monkeypatch, scene):
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "colour photo")
    slicer.util.updateVolumeFromArray(node, np.zeros((4, 5, 6, 3), np.uint8))
    return node, {}


def direction_not_offered(monkeypatch, scene):
    return ct_in_a_study(scene), {"target": "CT", "segment": False}


def other_modalities(monkeypatch, scene, tmp_path):
    path = write_tiny_model(tmp_path / "t1_t2.safetensors", ("T1", "T2"), (("T1", "T2"),), ("T2",))
    return ct_in_a_study(scene), {"modelPath": path}


def memory_exhausted(monkeypatch, scene):
    def out_of_memory(self, stack):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(PreparedNetworks, "translate", out_of_memory)
    return ct_in_a_study(scene), {}


REFUSALS = {
    "no GPU": (no_gpu, inference.InferenceError, r"^no GPU available: PyTorch sees no CUDA device"),
    "2D volume": (two_dimensional, UnsupportedVolumeError, r"'one slice'.* is 2D \(9 x 12 x 1 voxels\)"),
    "4D volume": (frame_of_a_sequence, UnsupportedVolumeError, r"one frame of the 4D sequence shown by 'cine browser'"),
    "vector volume": (colour_volume, UnsupportedVolumeError, r"'colour photo'.* several values per voxel"),
    "direction not offered": (direction_not_offered, inference.InferenceError,
                              r"does not translate to CT \(it offers CT -> MR\)"),
    "model for other modalities": (other_modalities, inference.InferenceError,
                                   r"does not translate to MR \(it offers T1 -> T2\)"),
    "out of memory": (memory_exhausted, inference.InferenceError,
                      r"^out of memory translating a volume of 5 x 12 x 9 voxels with device 'auto'"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_each_error_says_what_is_wrong_once_and_adds_nothing(scene, model_file, monkeypatch, tmp_path, case):
    make, error_type, message = REFUSALS[case]
    extra = (tmp_path,) if make is other_modalities else ()
    source, options = make(monkeypatch, scene, *extra)
    arguments = {"modelPath": model_file, **options}
    before = scene_state(scene)
    with pytest.raises(error_type, match=message) as raised:
        TranslationLogic().translate(source, **arguments)
    assert "\n" not in str(raised.value) and len(str(raised.value)) < 300
    assert scene_state(scene) == before


def test_gpu_out_of_memory_falls_back_to_smaller_batches_reports_it_and_adds_the_results_once(
        scene, model_file, monkeypatch):
    """The first batch of 4 slices runs out of memory (as on a GPU); the engine halves the batch and goes on."""
    batches = []
    translate_batch = PreparedNetworks.translate

    def out_of_memory_once(self, stack):
        batches.append(stack.shape[0])
        if len(batches) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return translate_batch(self, stack)

    monkeypatch.setattr(PreparedNetworks, "translate", out_of_memory_once)
    monkeypatch.setattr(sasan.inference.translation, "default_batch_size", lambda device, size, dtype: 4)
    source = ct_in_a_study(scene)
    before = node_ids(scene)
    result = TranslationLogic().translate(source, model_file, "MR", device="cpu")
    assert batches == [4, 2, 2, 1]
    assert result.notes == ["GPU out of memory: retrying with 2 slices per batch"]
    assert "Note: GPU out of memory: retrying with 2 slices per batch." in result.summary()
    added = [scene.GetNodeByID(node_id) for node_id in node_ids(scene) if node_id not in before]
    names = sorted(node.GetName() for node in added if node.IsA("vtkMRMLScalarVolumeNode")
                   or node.IsA("vtkMRMLSegmentationNode"))
    assert names == sorted(["patient CT (translated to MR)", "patient CT segmentation", "patient CT attention 1",
                            "patient CT attention 2", "patient CT attention (all maps)"])
    assert volume_from_node(result.volumeNode).array.shape == SHAPE


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


def test_process_events_runs_after_every_report(scene, model_file):
    events = []
    TranslationLogic(processEvents=lambda: events.append("events")).translate(
        ct_in_a_study(scene), model_file, device="cpu", segment=False, attention=False,
        progress=lambda fraction, message: events.append(fraction))
    assert events[-2:] == [1.0, "events"] and events.count("events") == len(events) // 2
