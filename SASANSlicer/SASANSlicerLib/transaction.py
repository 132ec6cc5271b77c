"""All or nothing: a block that adds nodes to the scene either completes or leaves the scene as it was."""
from __future__ import annotations

import logging
from typing import Optional

import vtk

import slicer

logger = logging.getLogger(__name__)


def _subject_hierarchy_items(scene) -> Optional[set[int]]:
    """IDs of every subject-hierarchy item (None when the scene has no hierarchy node yet)."""
    hierarchy = scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")
    if hierarchy is None:
        return None
    children = vtk.vtkIdList()
    hierarchy.GetItemChildren(hierarchy.GetSceneItemID(), children, True)
    return {children.GetId(i) for i in range(children.GetNumberOfIds())}


class SceneTransaction:
    """Context manager recording every node added to ``scene`` inside the block.

    If the block raises — an error, or ``RunCancelled`` after a cancel — every recorded node still in the
    scene is removed (last added first, so display and storage nodes go before their data node), and so
    are the subject-hierarchy items created meanwhile (folders), then the exception propagates.  Nodes the
    block removed itself (temporary nodes) are skipped.  Transactions nest: an inner rollback removes its
    own nodes, an outer one what is left.

    Example::

        with SceneTransaction(scene) as transaction:
            node = node_from_volume(volume, "result", scene)
            ...  # raising here removes ``node`` and its display node
    """

    def __init__(self, scene=None) -> None:
        self.scene = scene if scene is not None else slicer.mrmlScene
        self._added: list = []
        self._observer_tag: Optional[int] = None
        self._items_before: Optional[set[int]] = None

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def _on_node_added(self, caller, event, node) -> None:
        self._added.append(node)

    @property
    def added_nodes(self) -> list:
        """Nodes added inside the block that are still in the scene, in the order they were added."""
        return [node for node in self._added if self.scene.IsNodePresent(node)]

    def __enter__(self) -> "SceneTransaction":
        self._items_before = _subject_hierarchy_items(self.scene)
        self._observer_tag = self.scene.AddObserver(slicer.vtkMRMLScene.NodeAddedEvent, self._on_node_added)
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        self.scene.RemoveObserver(self._observer_tag)
        if exc_type is not None:
            self.rollback()
        return False  # never swallow the exception

    def rollback(self) -> None:
        """Remove what the block added (called automatically when the block raises)."""
        nodes = self.added_nodes
        logger.info("rolling back: removing %d node(s) added by the interrupted operation", len(nodes))
        for node in reversed(nodes):
            if self.scene.IsNodePresent(node):  # removing a node may remove others with it
                self.scene.RemoveNode(node)
        self._remove_new_hierarchy_items()
        self._added.clear()

    def _remove_new_hierarchy_items(self) -> None:
        hierarchy = self.scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")
        items_now = _subject_hierarchy_items(self.scene)
        if hierarchy is None or not items_now:
            return
        new_items = items_now - (self._items_before or set())
        for item in sorted(new_items, reverse=True):  # children were created after their folder
            hierarchy.RemoveItem(item, False, False)
