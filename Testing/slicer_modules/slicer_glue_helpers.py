"""Small helpers shared by the Slicer glue tests: scene snapshots, oblique directions, a tiny model file."""
from pathlib import Path

import numpy as np
from fixtures import TINY_NORMALIZATION
from fixtures import write_tiny_model as write_model


def node_ids(scene) -> list:
    """IDs of every node in ``scene``, in scene order."""
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


def hierarchy_items(scene) -> dict:
    """Every subject-hierarchy item of ``scene``: item ID -> (name, parent item ID); {} without a hierarchy."""
    import vtk

    hierarchy = scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")
    if hierarchy is None:
        return {}
    children = vtk.vtkIdList()
    hierarchy.GetItemChildren(hierarchy.GetSceneItemID(), children, True)
    items = [children.GetId(i) for i in range(children.GetNumberOfIds())]
    return {item: (hierarchy.GetItemName(item), hierarchy.GetItemParent(item)) for item in items}


def rotation(axis_angles_degrees) -> np.ndarray:
    """3x3 rotation: successive rotations about x, y, z by the given angles (an oblique direction matrix)."""
    ax, ay, az = np.radians(axis_angles_degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def write_tiny_model(path: Path, modalities=("CT", "MR"), directions=(("CT", "MR"),), segmenters=("MR",)) -> Path:
    """The shared tiny model file (``fixtures.write_tiny_model``), one way by default, its modalities renamed
    (``modalities`` take the CT and MR normalization in that order); segment classes depend on the image."""
    normalization = {new: TINY_NORMALIZATION[old] for new, old in zip(modalities, ("CT", "MR"))}
    return write_model(path, modalities=list(modalities), directions=[list(d) for d in directions],
                       normalization=normalization, segmenters=list(segmenters))


def show_as_sequence_frame(scene, frame) -> None:
    """Make ``frame`` the proxy of a one-frame 4D sequence, as the Sequences module shows a cine series."""
    import slicer

    scene.RegisterNodeClass(slicer.vtkMRMLSequenceBrowserNode())  # done by the Sequences module in Slicer
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "cine sequence")
    sequence.SetDataNodeAtValue(frame, "0")
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "cine browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    browser.AddProxyNode(frame, sequence, False)
