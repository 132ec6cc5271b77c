"""SceneTransaction: an interrupted block leaves the scene exactly as it found it."""
import numpy as np
import pytest

pytest.importorskip("slicer", reason="the MRML glue needs the slicer-core wheel")

from slicer_glue_helpers import node_ids  # noqa: E402
from sasan.data.volume import Volume  # noqa: E402
from SASANSlicerLib.hierarchy import create_folder_next_to, item_of, subject_hierarchy  # noqa: E402
from SASANSlicerLib.nodes import node_from_volume  # noqa: E402
from SASANSlicerLib.progress import CancelToken, RunCancelled  # noqa: E402
from SASANSlicerLib.transaction import SceneTransaction  # noqa: E402


def small_volume() -> Volume:
    return Volume(np.arange(24, dtype=np.float32).reshape(2, 3, 4))


def hierarchy_items(scene) -> set:
    import vtk

    hierarchy = subject_hierarchy(scene)
    children = vtk.vtkIdList()
    hierarchy.GetItemChildren(hierarchy.GetSceneItemID(), children, True)
    return {children.GetId(i) for i in range(children.GetNumberOfIds())}


def test_error_removes_every_added_node_and_folder(scene):
    existing = node_from_volume(small_volume(), "existing", scene)
    item_of(existing)
    ids_before, count_before, items_before = node_ids(scene), scene.GetNumberOfNodes(), hierarchy_items(scene)
    with pytest.raises(RuntimeError, match="disk full"):
        with SceneTransaction(scene) as transaction:
            node = node_from_volume(small_volume(), "half made", scene)
            item_of(node)
            create_folder_next_to("results", existing)
            scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "half made segmentation")
            assert len(transaction.added_nodes) == 3  # volume, its display node, the segmentation
            raise RuntimeError("disk full")
    assert scene.GetNumberOfNodes() == count_before
    assert node_ids(scene) == ids_before
    assert hierarchy_items(scene) == items_before


def test_cancel_rolls_back_like_an_error(scene):
    ids_before = node_ids(scene)
    token = CancelToken()
    with pytest.raises(RunCancelled):
        with SceneTransaction(scene):
            node_from_volume(small_volume(), "first", scene)
            token.cancel()
            token.raise_if_cancelled()
    assert node_ids(scene) == ids_before


def test_success_keeps_nodes_and_temporary_nodes_removed_inside_are_skipped(scene):
    with SceneTransaction(scene) as transaction:
        kept = node_from_volume(small_volume(), "kept", scene)
        temporary = node_from_volume(small_volume(), "temporary", scene, display=False)
        scene.RemoveNode(temporary)
    assert scene.IsNodePresent(kept)
    assert transaction.added_nodes == [kept, kept.GetDisplayNode()]


def test_nested_rollbacks_remove_inner_then_outer_nodes(scene):
    ids_before = node_ids(scene)
    with pytest.raises(ValueError):
        with SceneTransaction(scene) as outer:
            node_from_volume(small_volume(), "outer", scene)
            with pytest.raises(KeyError):
                with SceneTransaction(scene):
                    node_from_volume(small_volume(), "inner", scene)
                    raise KeyError("inner failure")
            assert [node.GetName() for node in outer.added_nodes if node.IsA("vtkMRMLVolumeNode")] == ["outer"]
            raise ValueError("outer failure")
    assert node_ids(scene) == ids_before


def test_observer_is_removed_after_the_block(scene):
    with SceneTransaction(scene) as transaction:
        pass
    node_from_volume(small_volume(), "after", scene)
    assert transaction.added_nodes == []
