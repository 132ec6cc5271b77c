"""Label volumes -> segmentation nodes with one named, coloured segment per structure."""
from __future__ import annotations

import logging

import numpy as np
import slicer

from sasan.config import LabelSpec
from sasan.data.volume import Volume

from .nodes import check_on_grid_of, node_from_volume
from .transaction import SceneTransaction

logger = logging.getLogger(__name__)


class SegmentationImportError(RuntimeError):
    """Slicer's Segmentations logic refused the label volume."""


def _check_labels(labels: list[LabelSpec]) -> None:
    if not labels:
        raise ValueError("a segmentation needs at least one structure (labels is empty)")
    values = [label.value for label in labels]
    if len(set(values)) != len(values):
        raise ValueError(f"label values must be distinct; got {values}")
    for label in labels:
        if label.value <= 0:
            raise ValueError(
                f"structure '{label.name}' has value {label.value}; 0 is the background, values must be > 0")
        if len(label.color) != 3 or not all(0.0 <= c <= 1.0 for c in label.color):
            raise ValueError(
                f"structure '{label.name}' needs an RGB colour with three values in [0, 1]; got {label.color}")


def class_indices_to_values(indices: np.ndarray, labels: list[LabelSpec]) -> np.ndarray:
    """Map class indices (0 background, ``i`` -> ``labels[i - 1]``) to the structures' label values.

    Returns a uint16 array of the same shape; raises ``ValueError`` on an index without a structure.
    """
    _check_labels(labels)
    lookup = np.array([0] + [label.value for label in labels], dtype=np.int64)
    if lookup.max() > np.iinfo(np.uint16).max:
        raise ValueError(f"label values above {np.iinfo(np.uint16).max} are not supported")
    indices = np.asarray(indices)
    if indices.size and (indices.min() < 0 or indices.max() >= len(lookup)):
        raise ValueError(
            f"class indices must lie in 0..{len(labels)} for {len(labels)} structures; "
            f"got {int(indices.min())}..{int(indices.max())}"
        )
    return lookup[indices].astype(np.uint16)


def segmentation_node_from_labels(label_volume: Volume, labels: list[LabelSpec], name: str, reference_node):
    """A segmentation node with one segment per structure of ``labels``, on ``reference_node``'s grid.

    ``label_volume`` holds the structures' label values (``LabelSpec.value``; use
    ``class_indices_to_values`` for class indices).  Every structure gets a segment named and coloured
    from its ``LabelSpec``, in the order of ``labels``; a structure absent from the volume gets an empty
    segment; voxel values of no listed structure are left out (logged).  The labelmap goes through Slicer's
    Segmentations logic via a temporary labelmap node, removed afterwards.  Atomic: on any error nothing
    is left in the scene.
    """
    _check_labels(labels)
    if not np.issubdtype(label_volume.array.dtype, np.integer):
        raise ValueError(f"a label volume needs integer voxels; got {label_volume.array.dtype}")
    check_on_grid_of(label_volume, reference_node, "the label volume")
    scene = reference_node.GetScene()
    with SceneTransaction(scene):
        segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        segmentation_node.CreateDefaultDisplayNodes()
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
        temporary = node_from_volume(
            label_volume, f"{name} (temporary labelmap)", scene, "vtkMRMLLabelMapVolumeNode", display=False
        )
        try:
            imported = slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(
                temporary, segmentation_node
            )
        finally:
            scene.RemoveNode(temporary)
        if not imported:
            raise SegmentationImportError(f"Slicer could not import the label volume into '{name}'")
        _name_and_order_segments(segmentation_node.GetSegmentation(), labels, name)
    return segmentation_node


def _name_and_order_segments(segmentation, labels: list[LabelSpec], name: str) -> None:
    by_value = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        by_value[segmentation.GetSegment(segment_id).GetLabelValue()] = segment_id
    wanted = {label.value for label in labels}
    unknown = sorted(set(by_value) - wanted)
    if unknown:
        logger.warning("'%s': voxel values %s belong to no listed structure and are left out", name, unknown)
        for value in unknown:
            segmentation.RemoveSegment(by_value[value])
    for position, label in enumerate(labels):
        segment_id = by_value.get(label.value)
        if segment_id is None:
            segment_id = segmentation.AddEmptySegment("", label.name, list(map(float, label.color)))
        else:
            segment = segmentation.GetSegment(segment_id)
            segment.SetName(label.name)
            segment.SetColor(*map(float, label.color))
        segmentation.SetSegmentIndex(segment_id, position)
