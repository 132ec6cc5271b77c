"""The server's MRML scene: the input volume, a run's results loaded from the child's files, what the slice
views show, and results written out for download.  Called on the server's event loop only."""
from __future__ import annotations

import io
import logging
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import slicer

logger = logging.getLogger(__name__)



def read_volume(scene, path: Path, name: str, class_name: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node of ``class_name`` read from ``path``; ``ValueError`` (and no node) if unreadable."""
    node = scene.AddNewNodeByClass(class_name, name)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        raise ValueError(f"'{name}' could not be read as a volume")
    node.CreateDefaultDisplayNodes()
    return node


def write_node(node, path: Path, reference_node=None) -> Path:
    """Write a volume or segmentation node; a segmentation to a non-``.seg.nrrd`` path is written as a label
    volume on ``reference_node``'s grid whose voxels hold each structure's label value (0 background)."""
    segmentation = node.IsA("vtkMRMLSegmentationNode")
    if segmentation and not path.name.endswith(".seg.nrrd"):
        return _write_label_volume(node, path, reference_node)
    storage = (slicer.vtkMRMLSegmentationStorageNode() if segmentation
               else slicer.vtkMRMLVolumeArchetypeStorageNode())
    storage.SetFileName(str(path))
    storage.SetUseCompression(True)
    if not storage.WriteData(node):
        raise OSError(f"could not write '{node.GetName()}'")
    return path


def _write_label_volume(segmentation_node, path: Path, reference_node) -> Path:
    import numpy as np
    import slicer.util

    scene = segmentation_node.GetScene()
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "export")
    try:
        if reference_node is not None:
            segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
        exported = slicer.vtkSlicerSegmentationsModuleLogic.ExportAllSegmentsToLabelmapNode(
            segmentation_node, labelmap, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
        if not exported:
            raise OSError(f"could not export '{segmentation_node.GetName()}' as a label volume")
        segmentation = segmentation_node.GetSegmentation()
        values = [segmentation.GetNthSegment(i).GetLabelValue() for i in range(segmentation.GetNumberOfSegments())]
        lookup = np.array([0, *values], dtype=np.uint16)  # exported as segment index + 1 -> its label value
        slicer.util.updateVolumeFromArray(labelmap, lookup[slicer.util.arrayFromVolume(labelmap)])
        return write_node(labelmap, path)
    finally:
        scene.RemoveNode(labelmap)


@dataclass
class Results:
    """One run's nodes in the server's scene, with the files the child wrote (for downloads)."""

    volume: object
    segmentation: Optional[object] = None
    attention: list = field(default_factory=list)
    overview: Optional[object] = None
    summary: str = ""
    folder: Optional[Path] = None

    def nodes(self) -> list:
        return [n for n in [self.volume, self.segmentation, *self.attention, self.overview] if n is not None]


def _apply_display(node, settings: dict) -> None:
    display = node.GetDisplayNode()
    if display is None:
        return
    if settings.get("ColorNodeID") and node.GetScene().GetNodeByID(settings["ColorNodeID"]) is not None:
        display.SetAndObserveColorNodeID(settings["ColorNodeID"])
    for name, value in settings.items():
        if name != "ColorNodeID" and value is not None:
            getattr(display, f"Set{name}")(value)


def load_results(scene, segmentations_logic, manifest: dict, folder: Path, input_node) -> Results:
    """Load the child's result files into ``scene`` beside ``input_node``: all of them, or (on any error)
    none.  Attention nodes are tagged as ``input_node``'s current maps, as the library tags them."""
    from SASANSlicerLib.attention_display import ATTENTION_INDEX_ATTRIBUTE, tag_attention_node

    added = []
    try:
        results = Results(volume=None, summary=manifest.get("summary", ""), folder=folder)
        for entry in manifest["nodes"]:
            path = folder / entry["file"]
            if entry["role"] == "segmentation":
                node = segmentations_logic.LoadSegmentationFromFile(str(path), False, entry["name"])
                if node is None:
                    raise ValueError("the segmentation could not be loaded")
                node.CreateDefaultDisplayNodes()
            else:
                node = read_volume(scene, path, entry["name"], entry["class"])
                _apply_display(node, entry.get("display", {}))
            added.append(node)
            for name, value in entry.get("attributes", {}).items():
                node.SetAttribute(name, value)
            if entry["role"] == "volume":
                results.volume = node
            elif entry["role"] == "segmentation":
                results.segmentation = node
            elif entry["role"] == "attention":
                results.attention.append(node)
            elif entry["role"] == "attention_overview":
                results.overview = node
            if entry["role"].startswith("attention"):
                tag_attention_node(node, input_node, int(node.GetAttribute(ATTENTION_INDEX_ATTRIBUTE) or 0))
        if results.volume is None:
            raise ValueError("the run made no translated volume")
        return results
    except BaseException:
        for node in added:
            scene.RemoveNode(node)
        raise


def remove_nodes(scene, nodes) -> None:
    for node in nodes:
        if node is not None and node.GetScene() is scene:
            scene.RemoveNode(node)


def segments(segmentation_node) -> list[dict]:
    """Name and colour (CSS hex) of each segment, in order: the legend."""
    if segmentation_node is None:
        return []
    segmentation = segmentation_node.GetSegmentation()
    legend = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        red, green, blue = (max(0, min(255, round(255 * c))) for c in segment.GetColor())
        legend.append({"name": segment.GetName(), "color": f"#{red:02x}{green:02x}{blue:02x}"})
    return legend


def export_bytes(node, suffix: str, reference_node=None) -> bytes:
    """A node written to a temporary file with ``suffix``, as bytes."""
    with tempfile.TemporaryDirectory(prefix="sasan-web-export-") as folder:
        path = Path(folder) / f"export{suffix}"
        write_node(node, path, reference_node)
        return path.read_bytes()


def export_zip(nodes: list, suffix: str, names: list[str]) -> bytes:
    """Several nodes, each written with ``suffix``, in one zip archive."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for node, name in zip(nodes, names):
            archive.writestr(f"{name}{suffix}", export_bytes(node, suffix))
    return buffer.getvalue()
