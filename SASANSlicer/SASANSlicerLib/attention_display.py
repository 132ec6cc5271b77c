"""Finding a run's attention nodes again and overlaying them on the slice views (pure MRML, no engine).

Attention nodes carry the attributes ``SASAN.AttentionOf`` (the input node's ID, while they are that
input's current maps) and ``SASAN.AttentionIndex`` (1..K for the maps, 0 for the all-maps overview);
attributes are saved with the scene, so the module finds the maps again after reloading it.

A map is shown thresholded: voxels attending less than ``LOW_ATTENTION`` are transparent, so where a map does
not attend the slice views show the input unchanged (unthresholded, attention 0 takes the colour table's first
colour, black for Inferno, and the overlay darkens the whole slice).
"""
from __future__ import annotations

import math
from typing import Optional

import slicer

ATTENTION_OF_ATTRIBUTE = "SASAN.AttentionOf"
ATTENTION_INDEX_ATTRIBUTE = "SASAN.AttentionIndex"
LOW_ATTENTION = 0.1  # of 0..1: less than this is transparent in the slice views
MAP_RANGE = (0.0, 255.0)  # uint8 voxels: attention 0..1


def tag_attention_node(node, source_node, index: int) -> None:
    """Mark ``node`` as map ``index`` (0: the overview) of ``source_node``'s current attention maps."""
    node.SetAttribute(ATTENTION_OF_ATTRIBUTE, source_node.GetID())
    node.SetAttribute(ATTENTION_INDEX_ATTRIBUTE, str(index))


def show_only_attended(display_node, low_attention: float = LOW_ATTENTION) -> None:
    """Set an attention map's scalar display: window fixed to the map range (maps and runs compare at a
    glance) and a threshold that makes voxels attending less than ``low_attention`` (0..1) transparent."""
    if not 0.0 <= low_attention <= 1.0:
        raise ValueError(f"low_attention must lie in 0..1; got {low_attention}")
    low, high = MAP_RANGE
    display_node.SetAutoWindowLevel(False)
    display_node.SetWindowLevelMinMax(low, high)
    display_node.SetAutoThreshold(False)
    display_node.SetThreshold(math.ceil(low + low_attention * (high - low)), high)
    display_node.SetApplyThreshold(True)


def release_attention_node(node) -> None:
    """Retire an earlier run's attention node: no longer one of its input's current maps (it stays an
    attention overlay, so ``show_attention(None, ...)`` still hides it)."""
    node.RemoveAttribute(ATTENTION_OF_ATTRIBUTE)


def nodes_of_class(scene, class_name: str) -> list:
    """The nodes of ``scene`` that are ``class_name`` or one of its subclasses, in scene order.

    Indexed by class, so nothing is allocated: ``vtkMRMLScene.GetNodesByClass`` returns a new collection the
    caller must release (vtkMRMLScene.h), which Python does not, so every call would keep the listed nodes
    alive after they leave the scene; ``slicer.util.getNodesByClass`` releases it but queries
    ``slicer.mrmlScene`` whatever scene it is given.
    """
    return [scene.GetNthNodeByClass(index, class_name) for index in range(scene.GetNumberOfNodesByClass(class_name))]


def _is_attention_node(scene, node_id: Optional[str]) -> bool:
    node = scene.GetNodeByID(node_id) if node_id else None
    return node is not None and node.GetAttribute(ATTENTION_INDEX_ATTRIBUTE) is not None


def find_attention_nodes(source_node) -> tuple[list, Optional[object]]:
    """The attention maps made from ``source_node`` (ordered 1..K) and their overview (or None)."""
    scene = source_node.GetScene()
    maps, overview = [], None
    for node in nodes_of_class(scene, "vtkMRMLScalarVolumeNode"):  # labelmaps are scalar volume subclasses
        if node.GetAttribute(ATTENTION_OF_ATTRIBUTE) != source_node.GetID():
            continue
        index = int(node.GetAttribute(ATTENTION_INDEX_ATTRIBUTE) or 0)
        if index == 0:
            overview = node
        else:
            maps.append((index, node))
    return [node for _, node in sorted(maps, key=lambda pair: pair[0])], overview


def attention_choices(maps: list, overview: Optional[object]) -> list[tuple[str, Optional[object]]]:
    """The attention selector's entries, (text, node): hidden, all maps (if there is an overview), map 1..K."""
    choices: list[tuple[str, Optional[object]]] = [("Hidden", None)]
    if overview is not None:
        choices.append(("All maps (strongest per voxel)", overview))
    choices += [(f"Map {index}", node) for index, node in enumerate(maps, start=1)]
    return choices


def show_attention(node, opacity: float, scene=None) -> int:
    """Overlay an attention node on every slice view; ``node=None`` hides all attention overlays.

    A map goes to the foreground layer, thresholded (``show_only_attended``), the overview (a label volume,
    0 transparent) to the label layer, each with ``opacity`` (0..1).  Layers holding anything other than
    attention nodes are left alone.  Works on whatever slice composite nodes the scene has (none without
    views); returns how many were changed.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must lie in 0..1; got {opacity}")
    scene = scene if scene is not None else (node.GetScene() if node is not None else slicer.mrmlScene)
    composites = nodes_of_class(scene, "vtkMRMLSliceCompositeNode")
    is_overview = node is not None and node.IsA("vtkMRMLLabelMapVolumeNode")
    for composite in composites:
        if _is_attention_node(scene, composite.GetForegroundVolumeID()):
            composite.SetForegroundVolumeID(None)
        if _is_attention_node(scene, composite.GetLabelVolumeID()):
            composite.SetLabelVolumeID(None)
        if node is None:
            continue
        if is_overview:
            composite.SetLabelVolumeID(node.GetID())
            composite.SetLabelOpacity(opacity)
        else:
            composite.SetForegroundVolumeID(node.GetID())
            composite.SetForegroundOpacity(opacity)
    display = node.GetDisplayNode() if node is not None and not is_overview else None
    if display is not None and not display.GetApplyThreshold():  # a map of a scene saved before thresholds
        show_only_attended(display)
    return len(composites)
