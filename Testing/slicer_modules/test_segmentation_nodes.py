"""Label volume -> segmentation node: names, colours, order and voxel counts per structure."""
import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="the MRML glue needs the slicer-core wheel")

from SASANSlicerLib.nodes import node_from_volume  # noqa: E402
from SASANSlicerLib.segmentation import class_indices_to_values, segmentation_node_from_labels  # noqa: E402
from slicer_glue_helpers import node_ids, rotation  # noqa: E402

from sasan.config import LabelSpec  # noqa: E402
from sasan.data.volume import Volume  # noqa: E402

LABELS = [
    LabelSpec("LV myocardium", 205, [0.85, 0.55, 0.20]),
    LabelSpec("LA blood", 420, [0.55, 0.35, 0.85]),
    LabelSpec("LV blood", 500, [0.85, 0.15, 0.20]),
    LabelSpec("ascending aorta", 820, [0.95, 0.85, 0.25]),
]


def reference_and_labels(scene):
    geometry = dict(spacing=(0.8, 0.9, 2.0), origin=(-40.0, 25.0, 7.5), direction=rotation((10, 5, -20)))
    image = Volume(np.zeros((6, 7, 8), np.float32), **geometry)
    labels = np.zeros((6, 7, 8), np.uint16)
    labels[1:4, 2:5, 2:6] = 205   # 3 * 3 * 4 = 36 voxels
    labels[4, 0:2, 0:3] = 500     # 6 voxels
    labels[0, 6, 7] = 820         # 1 voxel; LA blood (420) absent
    return node_from_volume(image, "heart CT", scene), Volume(labels, **geometry)


def segments(node) -> list:
    segmentation = node.GetSegmentation()
    return [segmentation.GetSegment(segmentation.GetNthSegmentID(i)) for i in range(segmentation.GetNumberOfSegments())]


def test_one_named_coloured_segment_per_structure_in_label_order(scene):
    reference, labels = reference_and_labels(scene)
    node = segmentation_node_from_labels(labels, LABELS, "heart CT segmentation", reference)
    assert node.GetName() == "heart CT segmentation"
    assert [s.GetName() for s in segments(node)] == [label.name for label in LABELS]
    for segment, label in zip(segments(node), LABELS):
        np.testing.assert_allclose(segment.GetColor(), label.color)


def test_voxel_counts_equal_the_label_volume_per_structure(scene):
    reference, labels = reference_and_labels(scene)
    node = segmentation_node_from_labels(labels, LABELS, "seg", reference)
    segmentation = node.GetSegmentation()
    for index, label in enumerate(LABELS):
        segment_id = segmentation.GetNthSegmentID(index)
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, reference)
        assert mask.shape == labels.shape
        np.testing.assert_array_equal(mask > 0, labels.array == label.value)
    assert int((labels.array == 205).sum()) == 36  # the hand count the masks were checked against


def test_temporary_labelmap_is_removed(scene):
    reference, labels = reference_and_labels(scene)
    before = set(node_ids(scene))
    node = segmentation_node_from_labels(labels, LABELS, "seg", reference)
    added = [scene.GetNodeByID(node_id) for node_id in set(node_ids(scene)) - before]
    assert not any(n.IsA("vtkMRMLLabelMapVolumeNode") for n in added)
    assert node in added


def test_values_of_unlisted_structures_are_left_out(scene):
    reference, labels = reference_and_labels(scene)
    labels.array[5, 5, 5] = 999
    node = segmentation_node_from_labels(labels, LABELS[:1], "seg", reference)
    assert [s.GetName() for s in segments(node)] == ["LV myocardium"]


def test_a_label_volume_off_the_reference_grid_is_refused_and_adds_nothing(scene):
    reference, labels = reference_and_labels(scene)
    before = node_ids(scene)
    shifted = Volume(labels.array, labels.spacing, (0.0, 0.0, 0.0), labels.direction)
    with pytest.raises(ValueError, match="grid of 'heart CT'"):
        segmentation_node_from_labels(shifted, LABELS, "seg", reference)
    with pytest.raises(ValueError, match="integer voxels"):
        segmentation_node_from_labels(labels.with_array(labels.array.astype(np.float32)), LABELS, "seg", reference)
    with pytest.raises(ValueError, match="distinct"):
        segmentation_node_from_labels(labels, [LABELS[0], LABELS[0]], "seg", reference)
    assert node_ids(scene) == before


def test_class_indices_become_label_values():
    indices = np.array([[0, 1], [2, 4]])
    np.testing.assert_array_equal(class_indices_to_values(indices, LABELS), [[0, 205], [420, 820]])
    with pytest.raises(ValueError, match="0..4"):
        class_indices_to_values(np.array([5]), LABELS)
