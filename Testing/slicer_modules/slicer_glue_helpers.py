"""Small helpers shared by the Slicer glue tests: scene snapshots, oblique directions, a tiny model file."""
from pathlib import Path

import numpy as np

TINY_ARCHITECTURE = {"num_maps": 2, "attention_widths": [4, 8], "encoder_widths": [4, 8, 8, 8],
                     "decoder_widths": [8, 4, 4], "head_width": 4, "spade_hidden": 4, "segmenter_width": 4,
                     "segmenter_depth": 2}
TINY_NORMALIZATION = {
    "CT": {"config": {"method": "window", "percentiles": [2.0, 98.0], "window": [-200.0, 400.0]},
           "reference": {"method": "window", "low": -200.0, "high": 400.0, "mean": 0.0, "std": 1.0}},
    "MR": {"config": {"method": "percentile", "percentiles": [1.0, 99.0], "window": [0.0, 1.0]},
           "reference": {"method": "percentile", "low": 10.0, "high": 900.0, "mean": 300.0, "std": 150.0}},
}
TINY_LABELS = [{"name": "LV blood", "value": 500, "color": [0.85, 0.15, 0.2]},
               {"name": "ascending aorta", "value": 820, "color": [0.95, 0.85, 0.25]}]


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
    """A real model file with random weights, 32² input, 2 attention maps, 2 structures.

    The segmenter's last layer is redrawn without bias so that its classes depend on the image (a fresh
    network's biases alone decide one class everywhere, which would make segment comparisons vacuous).
    """
    import torch

    from sasan import bundle
    from sasan.card import ModelCard
    from sasan.models.translator import segmenter_name

    normalization = {new: TINY_NORMALIZATION[old] for new, old in zip(modalities, ("CT", "MR"))}
    card = ModelCard(name="tiny", modalities=list(modalities), directions=[list(d) for d in directions],
                     architecture=dict(TINY_ARCHITECTURE), context=3, image_size=32,
                     normalization=normalization, labels=TINY_LABELS, segmenters=list(segmenters))
    networks = bundle.expected_networks(card)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for modality in segmenters:
            classify = networks[segmenter_name(modality)].classify
            classify.weight.copy_(torch.randn(classify.weight.shape, generator=generator))
            classify.bias.zero_()
    return bundle.save(path, card, networks)


def show_as_sequence_frame(scene, frame) -> None:
    """Make ``frame`` the proxy of a one-frame 4D sequence, as the Sequences module shows a cine series."""
    import slicer

    scene.RegisterNodeClass(slicer.vtkMRMLSequenceBrowserNode())  # done by the Sequences module in Slicer
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "cine sequence")
    sequence.SetDataNodeAtValue(frame, "0")
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "cine browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    browser.AddProxyNode(frame, sequence, False)
