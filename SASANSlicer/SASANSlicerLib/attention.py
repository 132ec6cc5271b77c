"""Attention maps as coloured overlay volumes, plus an overview of all maps in one label volume.

The engine hands over K maps as uint8 volumes (0..255 = attention 0..1).  Each becomes a scalar volume
node with a heat colour table and a fixed 0..255 window, so maps and runs compare at a glance.  An
"all maps" overview labels every voxel with the map attending most to it (1..K; 0 where no map
reaches ``OVERVIEW_MIN_ATTENTION``), shown in the label layer.  Nodes are tagged as their input's
attention maps (``attention_display``), which shows them and finds them again.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from sasan.data.volume import Volume

from .attention_display import show_only_attended, tag_attention_node
from .nodes import check_on_grid_of, node_from_volume
from .transaction import SceneTransaction

logger = logging.getLogger(__name__)

# Perceptually ordered heat maps first (in Slicer), then tables that slicer-core also has.
ATTENTION_COLOR_NODE_IDS = (
    "vtkMRMLColorTableNodeFileInferno.txt",
    "vtkMRMLColorTableNodeFileColdToHotRainbow.txt",
    "vtkMRMLPETProceduralColorNodePET-Heat",
    "vtkMRMLColorTableNodeIron",
)
OVERVIEW_COLOR_NODE_IDS = ("vtkMRMLColorTableNodeLabels",)
OVERVIEW_MIN_ATTENTION = 128  # uint8 units: a voxel belongs to a map once that map's attention reaches 0.5


def first_color_node_id(scene, candidates: tuple[str, ...]) -> Optional[str]:
    """The first of ``candidates`` that is a colour node in ``scene`` (None if none is)."""
    for node_id in candidates:
        if scene.GetNodeByID(node_id) is not None:
            return node_id
    return None


def _check_map(attention_map: Volume, index: int, reference_node) -> None:
    if attention_map.array.dtype != np.uint8:
        raise ValueError(
            f"attention map {index} has {attention_map.array.dtype} voxels; "
            "maps arrive as uint8 (0..255 = attention 0..1)"
        )
    check_on_grid_of(attention_map, reference_node, f"attention map {index}")


def attention_nodes_from_maps(maps: list[Volume], base_name: str, reference_node) -> list:
    """One scalar volume node per map, named ``"<base_name> <k>"`` (k = 1..K), on ``reference_node``'s grid.

    Colour table: the first of ``ATTENTION_COLOR_NODE_IDS`` present in the scene; window/level fixed to
    0..255 and low attention transparent (``attention_display.show_only_attended``).  Atomic: a refused map
    leaves no node behind.
    """
    if not maps:
        raise ValueError("no attention maps to show")
    for index, attention_map in enumerate(maps, start=1):
        _check_map(attention_map, index, reference_node)
    scene = reference_node.GetScene()
    color_node_id = first_color_node_id(scene, ATTENTION_COLOR_NODE_IDS)
    if color_node_id is None:
        logger.warning("no heat colour table in the scene; attention maps are shown in grey")
    nodes = []
    with SceneTransaction(scene):
        for index, attention_map in enumerate(maps, start=1):
            node = node_from_volume(attention_map, f"{base_name} {index}", scene)
            display = node.GetDisplayNode()
            if color_node_id is not None:
                display.SetAndObserveColorNodeID(color_node_id)
            show_only_attended(display)
            tag_attention_node(node, reference_node, index)
            nodes.append(node)
    return nodes


def attention_overview_node(maps: list[Volume], name: str, reference_node):
    """Label volume node: for each voxel the map (1..K) attending most to it, 0 where none reaches 0.5."""
    if not maps:
        raise ValueError("no attention maps to summarise")
    for index, attention_map in enumerate(maps, start=1):
        _check_map(attention_map, index, reference_node)
    stacked = np.stack([m.array for m in maps])  # (K, nk, nj, ni)
    strongest = stacked.argmax(axis=0).astype(np.uint8) + 1
    strongest[stacked.max(axis=0) < OVERVIEW_MIN_ATTENTION] = 0
    scene = reference_node.GetScene()
    with SceneTransaction(scene):
        node = node_from_volume(maps[0].with_array(strongest), name, scene, "vtkMRMLLabelMapVolumeNode")
        color_node_id = first_color_node_id(scene, OVERVIEW_COLOR_NODE_IDS)
        if color_node_id is not None:
            node.GetDisplayNode().SetAndObserveColorNodeID(color_node_id)
        tag_attention_node(node, reference_node, 0)
    return node
