"""Where result nodes go: names derived from the input's, and a place beside it in the scene.

Results sit under the input's parent in the subject hierarchy (same patient / study / folder) and observe
the input's parent transform, so they overlay the input wherever the input is shown.
"""
from __future__ import annotations

import slicer


def translated_name(input_name: str, target: str) -> str:
    """``"<input> (translated to MR)"``."""
    return f"{input_name} (translated to {target})"


def segmentation_name(input_name: str) -> str:
    """``"<input> segmentation"``."""
    return f"{input_name} segmentation"


def attention_base_name(input_name: str) -> str:
    """``"<input> attention"``; the maps are named ``"<input> attention 1"`` .. ``"<input> attention K"``."""
    return f"{input_name} attention"


def attention_overview_name(input_name: str) -> str:
    """``"<input> attention (all maps)"``."""
    return f"{input_name} attention (all maps)"


def attention_folder_name(input_name: str) -> str:
    """``"<input> attention maps"``: the folder holding one run's attention nodes."""
    return f"{input_name} attention maps"


def subject_hierarchy(scene=None):
    """The scene's subject hierarchy node (created if the scene has none)."""
    scene = scene if scene is not None else slicer.mrmlScene
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if hierarchy is None:
        raise RuntimeError("the scene has no subject hierarchy and none could be created")
    return hierarchy


def item_of(node) -> int:
    """The node's subject-hierarchy item, created under the scene root if the node has none yet.

    In Slicer every added node gets an item automatically; without the application (slicer-core) it
    does not, so the item is made here.
    """
    hierarchy = subject_hierarchy(node.GetScene())
    item = hierarchy.GetItemByDataNode(node)
    if not item:
        item = hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)
    return item


def _parent_item_of(reference_node) -> int:
    hierarchy = subject_hierarchy(reference_node.GetScene())
    return hierarchy.GetItemParent(item_of(reference_node))


def place_next_to(node, reference_node) -> int:
    """Move ``node`` beside ``reference_node`` (same hierarchy parent, same parent transform); its item ID."""
    hierarchy = subject_hierarchy(reference_node.GetScene())
    item = item_of(node)
    hierarchy.SetItemParent(item, _parent_item_of(reference_node))
    node.SetAndObserveTransformNodeID(reference_node.GetTransformNodeID())
    return item


def create_folder_next_to(name: str, reference_node) -> int:
    """A new subject-hierarchy folder beside ``reference_node``; its item ID."""
    hierarchy = subject_hierarchy(reference_node.GetScene())
    return hierarchy.CreateFolderItem(_parent_item_of(reference_node), name)


def place_in_folder(node, folder_item: int, reference_node) -> int:
    """Move ``node`` into ``folder_item``, observing ``reference_node``'s parent transform; its item ID."""
    hierarchy = subject_hierarchy(reference_node.GetScene())
    item = item_of(node)
    hierarchy.SetItemParent(item, folder_item)
    node.SetAndObserveTransformNodeID(reference_node.GetTransformNodeID())
    return item
