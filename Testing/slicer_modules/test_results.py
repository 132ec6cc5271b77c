"""A run's outputs into the scene: names, places beside the input, all-or-nothing, chosen output volume."""
import numpy as np
import pytest

pytest.importorskip("slicer", reason="the MRML glue needs the slicer-core wheel")

from SASANSlicerLib import attention as attention_module  # noqa: E402
from SASANSlicerLib.attention_display import find_attention_nodes  # noqa: E402
from SASANSlicerLib.hierarchy import item_of, subject_hierarchy  # noqa: E402
from SASANSlicerLib.nodes import node_from_volume, volume_from_node  # noqa: E402
from SASANSlicerLib.results import TranslationOutput, add_results_to_scene  # noqa: E402
from slicer_glue_helpers import node_ids, rotation  # noqa: E402

from sasan.config import LabelSpec  # noqa: E402
from sasan.data.volume import Volume  # noqa: E402

LABELS = [LabelSpec("LV blood", 500, [0.85, 0.15, 0.2]), LabelSpec("aorta", 820, [0.95, 0.85, 0.25])]
GEOMETRY = dict(spacing=(0.9, 0.9, 2.5), origin=(3.0, 4.0, 5.0), direction=rotation((0, 0, 30)))


def input_in_a_study(scene):
    """An input volume inside a patient/study folder, under a linear transform."""
    node = node_from_volume(Volume(np.random.rand(3, 4, 5).astype(np.float32), **GEOMETRY), "patient CT", scene)
    hierarchy = subject_hierarchy(scene)
    study = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), "study")
    hierarchy.SetItemParent(item_of(node), study)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    node.SetAndObserveTransformNodeID(transform.GetID())
    return node, study, transform


def run_output(with_segmentation=True, maps=2) -> TranslationOutput:
    labels = np.zeros((3, 4, 5), np.uint16)
    labels[1, 1:3, 1:4] = 500
    attention = [Volume(np.full((3, 4, 5), 60 * (k + 1), np.uint8), **GEOMETRY) for k in range(maps)]
    return TranslationOutput(
        image=Volume(np.ones((3, 4, 5), np.float32) * 7, **GEOMETRY),
        segmentation=Volume(labels, **GEOMETRY) if with_segmentation else None,
        labels=LABELS,
        attention=attention,
    )


def test_outputs_are_named_after_the_input_and_placed_beside_it(scene):
    source, study, transform = input_in_a_study(scene)
    result = add_results_to_scene(source, run_output(), "MR")
    hierarchy = subject_hierarchy(scene)
    assert result.volumeNode.GetName() == "patient CT (translated to MR)"
    assert result.segmentationNode.GetName() == "patient CT segmentation"
    assert [n.GetName() for n in result.attentionNodes] == ["patient CT attention 1", "patient CT attention 2"]
    assert result.attentionOverviewNode.GetName() == "patient CT attention (all maps)"
    for node in (result.volumeNode, result.segmentationNode):
        assert hierarchy.GetItemParent(item_of(node)) == study
    folder = hierarchy.GetItemParent(item_of(result.attentionNodes[0]))
    assert hierarchy.GetItemName(folder) == "patient CT attention maps"
    assert hierarchy.GetItemParent(folder) == study
    for node in (result.volumeNode, result.segmentationNode, *result.attentionNodes, result.attentionOverviewNode):
        assert node.GetTransformNodeID() == transform.GetID()
    np.testing.assert_array_equal(volume_from_node(result.volumeNode).array, 7)


def test_a_failure_half_way_adds_nothing_and_keeps_the_chosen_output_untouched(scene, monkeypatch):
    source, _, _ = input_in_a_study(scene)
    chosen = node_from_volume(Volume(np.zeros((2, 2, 2), np.float32)), "my output", scene)
    ids_before = node_ids(scene)

    def broken_overview(*args, **kwargs):
        raise MemoryError("out of memory")

    monkeypatch.setattr(attention_module, "attention_overview_node", broken_overview)
    with pytest.raises(MemoryError):
        add_results_to_scene(source, run_output(), "MR", output_node=chosen)
    assert node_ids(scene) == ids_before
    assert volume_from_node(chosen).shape == (2, 2, 2)


def test_a_chosen_output_volume_receives_the_translation(scene):
    source, study, transform = input_in_a_study(scene)
    chosen = node_from_volume(Volume(np.zeros((2, 2, 2), np.float32)), "my output", scene)
    result = add_results_to_scene(source, run_output(with_segmentation=False, maps=0), "MR", output_node=chosen)
    assert result.volumeNode is chosen and chosen.GetName() == "my output"
    back = volume_from_node(chosen)
    assert back.same_geometry(volume_from_node(source), atol=1e-12)
    np.testing.assert_array_equal(back.array, 7)
    assert chosen.GetTransformNodeID() == transform.GetID()
    assert result.segmentationNode is None and result.attentionNodes == []


def test_a_second_run_makes_its_maps_the_current_ones(scene):
    source, _, _ = input_in_a_study(scene)
    first = add_results_to_scene(source, run_output(), "MR")
    second = add_results_to_scene(source, run_output(maps=3), "MR")
    maps, overview = find_attention_nodes(source)
    assert maps == second.attentionNodes and overview is second.attentionOverviewNode
    assert all(scene.IsNodePresent(node) for node in first.attentionNodes)  # kept, just no longer current


def test_outputs_off_the_input_grid_or_labels_missing_are_refused(scene):
    source, _, _ = input_in_a_study(scene)
    before = node_ids(scene)
    output = run_output()
    output.image = Volume(output.image.array[:, :, :4], **GEOMETRY)
    with pytest.raises(ValueError, match="translated image .* grid of 'patient CT'"):
        add_results_to_scene(source, output, "MR")
    output = run_output()
    output.labels = []
    with pytest.raises(ValueError, match="labels"):
        add_results_to_scene(source, output, "MR")
    assert node_ids(scene) == before
