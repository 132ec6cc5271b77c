"""Scalar volume nodes <-> engine ``Volume`` objects, with exact geometry.

MRML places voxel (i, j, k) at ``IJKToRAS @ (i, j, k, 1)`` in RAS world coordinates; the engine's
``Volume`` follows SimpleITK: LPS world coordinates, ``origin + direction @ (spacing * (i, j, k))``.
The two worlds differ by a flip of their first two axes, ``F = diag(-1, -1, 1)``, so

    origin_LPS = F @ origin_RAS        direction_LPS = F @ direction_RAS

while spacing and the voxel array (indexed ``[k, j, i]`` on both sides) are shared unchanged.
Spacing, origin and directions are copied field by field (never through a 4x4 matrix that would be
decomposed again), so a round trip returns bit-identical geometry.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import slicer
import vtk

from sasan.data.volume import Volume

from .transaction import SceneTransaction

logger = logging.getLogger(__name__)

RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0])  # its own inverse


class UnsupportedVolumeError(ValueError):
    """The node cannot be exchanged with the engine (not a 3D single-component scalar volume)."""


def _label(node) -> str:
    return f"volume '{node.GetName()}' ({node.GetID()})"


def _sequence_browser_of(node) -> Optional[object]:
    """The sequence browser that shows ``node`` as one frame of a sequence, if any."""
    scene = node.GetScene()
    if scene is None:
        return None
    # Indexed by class: GetNodesByClass returns a new collection its caller must release (vtkMRMLScene.h).
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        browser = scene.GetNthNodeByClass(index, "vtkMRMLSequenceBrowserNode")
        is_proxy = getattr(browser, "IsProxyNodeID", None) or browser.IsProxyNode  # renamed in Slicer 5.9
        if is_proxy(node.GetID()):
            return browser
    return None


def check_translatable(node) -> None:
    """Raise ``UnsupportedVolumeError`` naming the node unless it is a 3D single-component scalar volume."""
    if node is None:
        raise UnsupportedVolumeError("no input volume selected")
    if node.IsA("vtkMRMLVectorVolumeNode") or node.IsA("vtkMRMLTensorVolumeNode"):
        kind = "a 4D multi-volume" if node.IsA("vtkMRMLMultiVolumeNode") else f"a {node.GetClassName()}"
        raise UnsupportedVolumeError(
            f"{_label(node)} is {kind} with several values per voxel; SASAN translates single-component "
            "scalar volumes (convert colour images to grey first)"
        )
    if not node.IsA("vtkMRMLScalarVolumeNode"):
        raise UnsupportedVolumeError(f"{_label(node)} is a {node.GetClassName()}, not a scalar volume")
    image = node.GetImageData()
    if image is None or image.GetNumberOfPoints() == 0:
        raise UnsupportedVolumeError(f"{_label(node)} has no voxels")
    components = image.GetNumberOfScalarComponents()
    if components != 1:
        raise UnsupportedVolumeError(
            f"{_label(node)} has {components} components per voxel (a vector or RGB image); "
            "SASAN translates single-component scalar volumes"
        )
    dimensions = image.GetDimensions()
    if min(dimensions) < 2:
        raise UnsupportedVolumeError(
            f"{_label(node)} is 2D ({' x '.join(str(d) for d in dimensions)} voxels); "
            "SASAN translates 3D volumes"
        )
    browser = _sequence_browser_of(node)
    if browser is not None:
        raise UnsupportedVolumeError(
            f"{_label(node)} is one frame of the 4D sequence shown by '{browser.GetName()}'; "
            "SASAN translates 3D volumes (copy the frame to a new volume first)"
        )


def node_shape(node) -> tuple[int, int, int]:
    """Array shape ``(nk, nj, ni)`` of a volume node's image data."""
    ni, nj, nk = node.GetImageData().GetDimensions()
    return (nk, nj, ni)


def node_index_to_lps(node) -> np.ndarray:
    """4x4 matrix mapping homogeneous (i, j, k, 1) of the node's voxels to LPS world (x, y, z, 1).

    Built from the same fields as ``volume_from_node``, so it equals ``Volume.index_to_world()`` exactly.
    """
    direction, spacing, origin = _geometry_of(node)
    return Volume(np.zeros((1, 1, 1)), spacing, origin, direction).index_to_world()


def check_on_grid_of(volume: Volume, reference_node, what: str) -> None:
    """Raise ``ValueError`` unless ``volume`` lies on ``reference_node``'s voxel grid (results overlay inputs)."""
    shape = node_shape(reference_node)
    if volume.shape != shape or not np.allclose(volume.index_to_world(), node_index_to_lps(reference_node), atol=1e-5):
        raise ValueError(
            f"{what} ({volume.shape} voxels) does not lie on the voxel grid of '{reference_node.GetName()}' "
            f"({shape} voxels); results must overlay their input exactly"
        )


def _geometry_of(node) -> tuple[np.ndarray, tuple, tuple]:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(matrix)
    direction_ras = np.array([[matrix.GetElement(r, c) for c in range(3)] for r in range(3)])
    origin_ras = np.array(node.GetOrigin(), dtype=np.float64)
    return RAS_FROM_LPS @ direction_ras, tuple(node.GetSpacing()), tuple(RAS_FROM_LPS @ origin_ras)


def volume_from_node(node) -> Volume:
    """Copy a scalar volume node into a ``Volume`` (array ``(nk, nj, ni)`` in the node's dtype, LPS geometry).

    The node's own grid is used (its ``IJKToRAS``); a parent transform is not applied to the voxels —
    results get the same parent transform instead (``hierarchy.place_next_to``).
    Raises ``UnsupportedVolumeError`` for vector/RGB, tensor, 2D, empty or 4D-sequence volumes.
    """
    check_translatable(node)
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    direction, spacing, origin = _geometry_of(node)
    return Volume(array, spacing, origin, direction)


def _vtk_compatible(array: np.ndarray, name: str) -> np.ndarray:
    """The array in a dtype VTK volumes render correctly (no bool, float16 or 64-bit integers)."""
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype in (np.int64, np.uint64):
        info = np.iinfo(np.int32)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ValueError(f"'{name}': 64-bit integer voxels outside the 32-bit range cannot be shown in Slicer")
        return array.astype(np.int32)
    return np.ascontiguousarray(array)


def _set_geometry(node, volume: Volume) -> None:
    direction_ras = RAS_FROM_LPS @ volume.direction
    matrix = vtk.vtkMatrix4x4()
    for row in range(3):
        for column in range(3):
            matrix.SetElement(row, column, float(direction_ras[row, column]))
    node.SetIJKToRASDirectionMatrix(matrix)
    node.SetSpacing(*volume.spacing)
    node.SetOrigin(*(float(v) for v in RAS_FROM_LPS @ np.asarray(volume.origin)))


def update_node_from_volume(node, volume: Volume) -> None:
    """Replace a volume node's voxels and geometry with those of ``volume``."""
    array = _vtk_compatible(volume.array, node.GetName())
    _set_geometry(node, volume)
    slicer.util.updateVolumeFromArray(node, array)


def node_from_volume(
    volume: Volume,
    name: str,
    scene=None,
    node_class: str = "vtkMRMLScalarVolumeNode",
    display: bool = True,
):
    """Add a volume node holding ``volume`` (voxels and geometry) to ``scene`` (default: ``slicer.mrmlScene``).

    ``node_class`` may be ``vtkMRMLScalarVolumeNode`` or ``vtkMRMLLabelMapVolumeNode``; ``display=False``
    skips the display nodes (for temporary nodes that are never shown).
    """
    if node_class not in ("vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode"):
        raise ValueError(f"node_from_volume makes scalar or labelmap volume nodes, not {node_class}")
    scene = scene if scene is not None else slicer.mrmlScene
    array = _vtk_compatible(volume.array, name)  # before adding anything, so a refusal adds nothing
    with SceneTransaction(scene):
        node = scene.AddNewNodeByClass(node_class, name)
        _set_geometry(node, volume)
        slicer.util.updateVolumeFromArray(node, array)
        if display:
            node.CreateDefaultDisplayNodes()
    logger.debug("added %s %s with shape %s", node_class, node.GetID(), volume.shape)
    return node
