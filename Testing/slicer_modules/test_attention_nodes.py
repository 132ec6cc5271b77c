"""Attention maps -> coloured volume nodes, the all-maps overview, and the slice-view overlay helper."""
import math

import numpy as np
import pytest

pytest.importorskip("slicer", reason="the MRML glue needs the slicer-core wheel")

from SASANSlicerLib.attention import (  # noqa: E402
    ATTENTION_COLOR_NODE_IDS,
    attention_nodes_from_maps,
    attention_overview_node,
)
from SASANSlicerLib.attention_display import (  # noqa: E402
    LOW_ATTENTION,
    find_attention_nodes,
    release_attention_node,
    show_attention,
)
from SASANSlicerLib.nodes import node_from_volume, volume_from_node  # noqa: E402
from slicer_glue_helpers import node_ids  # noqa: E402

from sasan.data.volume import Volume  # noqa: E402

GEOMETRY = dict(spacing=(1.0, 1.0, 3.0), origin=(5.0, -5.0, 0.0))


def reference_and_maps(scene, count=3):
    reference = node_from_volume(Volume(np.zeros((2, 3, 4), np.float32), **GEOMETRY), "MR", scene)
    maps = []
    for index in range(count):
        array = np.zeros((2, 3, 4), np.uint8)
        array[..., index] = 200 + index  # map k attends to column k
        maps.append(Volume(array, **GEOMETRY))
    return reference, maps


def composite_nodes(scene, names=("Red", "Yellow", "Green")):
    nodes = []
    for name in names:
        node = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
        node.SetLayoutName(name)
        nodes.append(node)
    return nodes


def test_maps_become_named_nodes_with_values_colour_table_and_fixed_window(scene):
    reference, maps = reference_and_maps(scene)
    nodes = attention_nodes_from_maps(maps, "MR attention", reference)
    assert [n.GetName() for n in nodes] == ["MR attention 1", "MR attention 2", "MR attention 3"]
    # slicer-core has no colour files: the first table of the preference list it has is PET-Heat.
    assert scene.GetNodeByID("vtkMRMLColorTableNodeFileInferno.txt") is None
    for node, attention_map in zip(nodes, maps):
        back = volume_from_node(node)
        np.testing.assert_array_equal(back.array, attention_map.array)
        assert back.array.dtype == np.uint8
        display = node.GetDisplayNode()
        assert display.GetColorNodeID() == "vtkMRMLPETProceduralColorNodePET-Heat"
        assert display.GetColorNodeID() in ATTENTION_COLOR_NODE_IDS
        assert not display.GetAutoWindowLevel()
        assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, 255.0)
        assert display.GetApplyThreshold() and not display.GetAutoThreshold()  # attention near 0: transparent
        assert (display.GetLowerThreshold(), display.GetUpperThreshold()) == (math.ceil(255 * LOW_ATTENTION), 255)


def test_overview_labels_each_voxel_with_its_strongest_map(scene):
    reference, maps = reference_and_maps(scene)
    maps[0].array[0, 0, 1] = 250           # map 1 beats map 2 (201) in that voxel
    maps[2].array[1, 2, 2] = 100           # no map reaches 0.5 (128) in that voxel: background
    overview = attention_overview_node(maps, "MR attention (all maps)", reference)
    assert overview.IsA("vtkMRMLLabelMapVolumeNode")
    labels = volume_from_node(overview).array
    expected = np.zeros((2, 3, 4), np.uint8)
    expected[..., 0], expected[..., 1], expected[..., 2] = 1, 2, 3
    expected[0, 0, 1] = 1
    expected[1, 2, 2] = 0
    np.testing.assert_array_equal(labels, expected)
    assert overview.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeLabels"


def test_find_attention_nodes_orders_maps_and_ignores_released_ones(scene):
    reference, maps = reference_and_maps(scene)
    nodes = attention_nodes_from_maps(maps, "MR attention", reference)
    overview = attention_overview_node(maps, "overview", reference)
    found, found_overview = find_attention_nodes(reference)
    assert found == nodes and found_overview is overview
    for node in [*nodes, overview]:
        release_attention_node(node)
    assert find_attention_nodes(reference) == ([], None)


def test_float_or_misplaced_maps_are_refused_and_nothing_is_added(scene):
    reference, maps = reference_and_maps(scene)
    before = node_ids(scene)
    floats = maps[:1] + [maps[1].with_array(maps[1].array / 255.0)]
    with pytest.raises(ValueError, match="attention map 2 has float64"):
        attention_nodes_from_maps(floats, "MR attention", reference)
    moved = Volume(maps[0].array, (1.0, 1.0, 1.0), GEOMETRY["origin"])
    with pytest.raises(ValueError, match="attention map 1 .* grid of 'MR'"):
        attention_overview_node([moved], "overview", reference)
    assert node_ids(scene) == before


def test_show_attention_sets_foreground_or_label_layer_and_hides_only_attention(scene):
    reference, maps = reference_and_maps(scene)
    nodes = attention_nodes_from_maps(maps, "MR attention", reference)
    overview = attention_overview_node(maps, "overview", reference)
    red, yellow, green = composite_nodes(scene)
    assert show_attention(nodes[1], 0.4, scene) == 3
    for composite in (red, yellow, green):
        assert composite.GetForegroundVolumeID() == nodes[1].GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.4)
    assert show_attention(overview, 0.7) == 3
    assert red.GetForegroundVolumeID() is None  # the map it replaced is no longer shown
    assert red.GetLabelVolumeID() == overview.GetID() and red.GetLabelOpacity() == pytest.approx(0.7)
    red.SetForegroundVolumeID(reference.GetID())  # the user's own overlay stays untouched
    show_attention(None, 0.5, scene)
    assert red.GetForegroundVolumeID() == reference.GetID()
    assert red.GetLabelVolumeID() is None and yellow.GetLabelVolumeID() is None
    with pytest.raises(ValueError, match="opacity"):
        show_attention(nodes[0], 1.5, scene)


def test_showing_a_map_of_an_older_scene_thresholds_it_once(scene):
    reference, maps = reference_and_maps(scene, count=1)
    (node,) = attention_nodes_from_maps(maps, "MR attention", reference)
    display = node.GetDisplayNode()
    display.SetApplyThreshold(False)  # as saved before maps were thresholded
    composite_nodes(scene, ["Red"])
    show_attention(node, 0.5, scene)
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == math.ceil(255 * LOW_ATTENTION)
    display.SetLowerThreshold(100)  # the user's own threshold (Volumes module) is kept
    show_attention(node, 0.8, scene)
    assert display.GetLowerThreshold() == 100


def test_show_attention_without_views_changes_nothing(scene):
    reference, maps = reference_and_maps(scene, count=1)
    (node,) = attention_nodes_from_maps(maps, "MR attention", reference)
    assert show_attention(node, 0.5) == 0


def test_finding_and_showing_maps_keeps_no_reference_to_any_node(scene):
    """vtkMRMLScene.GetNodesByClass returns a collection its caller must release; a leaked one holds a
    reference to every node it lists, so a volume deleted from the scene would stay in memory."""
    reference, maps = reference_and_maps(scene)
    nodes = attention_nodes_from_maps(maps, "MR attention", reference)
    composites = composite_nodes(scene)
    watched = [reference, *nodes, *composites]
    before = [node.GetReferenceCount() for node in watched]
    for _ in range(3):
        find_attention_nodes(reference)
        show_attention(nodes[0], 0.5, scene)
        show_attention(None, 0.5, scene)
    assert [node.GetReferenceCount() for node in watched] == before
