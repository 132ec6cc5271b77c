"""Render the extension's screenshot without the Slicer application: a real translation, drawn by Slicer's
own slice logic (``vtkMRMLSliceLogic``, what a slice view shows), saved as a PNG.

    .venv/bin/python -m scripts.render_slicer_screenshot --model MODEL.safetensors [--input CT.nii.gz]
        [--slice 0.5] [--map 1] [--opacity 0.45] [-o Resources/Screenshots/SASANSlicer.png]

Without ``--input`` the SASAN phantom CT of the Sample Data module is used.  The scene is translated to MR with
the module's ``TranslationLogic`` (segmentation and attention maps), then two axial slice views are rendered:
the input CT alone, and the translated volume as background with one attention map overlaid by the module's own
display code (``attention_display.show_attention``: opacity ``--opacity``, attention below
``attention_display.LOW_ATTENTION`` transparent) and the segmentation as label-layer outlines.  No window
system is needed: the slice logic blends its layers with VTK's imaging filters.  Slicer draws segments
in its views through a displayable manager that needs a render window; here the segmentation is exported to a
labelmap with the segments' colours, which the slice logic blends itself.  The two views and their captions
are put side by side with matplotlib.

The committed ``Resources/Screenshots/SASANSlicer.png`` came from ``--model
Resources/Models/phantom_ct_mr.safetensors --slice 0.316 --map 2`` (the shipped phantom model, rebuilt by
``scripts/phantom_model.py``).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SASANSlicer"))

import slicer  # noqa: E402
from SASANSlicerLib.attention_display import show_attention  # noqa: E402
from SASANSlicerLib.standalone import attach_module_logics, module_namespace  # noqa: E402
from vtk.util import numpy_support  # noqa: E402

logger = logging.getLogger("render_slicer_screenshot")
VIEW_SIZE = 480  # pixels per slice view (square)


def scene_with_logics():
    """A scene as the Slicer application sets one up for these modules: volumes, segmentations, subject
    hierarchy and colour logics attached (``slicer.modules.<name>.logic()`` answers for the glue)."""
    scene = slicer.vtkMRMLScene()
    logics = attach_module_logics(scene)
    slicer.mrmlScene = scene
    slicer.modules = module_namespace(logics)
    return scene


def load_volume(scene, path: Path, name: str):
    """Read a volume file (NRRD, NIfTI, ...) into a scalar volume node with Slicer's storage node."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise SystemExit(f"could not read {path}")
    node.SetAndObserveStorageNodeID(storage.GetID())
    node.CreateDefaultDisplayNodes()
    return node


def set_window(node, low: float, high: float) -> None:
    display = node.GetDisplayNode()
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(low, high)


def segmentation_labelmap(scene, segmentation_node):
    """The segmentation as a labelmap on its reference grid, coloured (and named) like its segments; None
    when every segment is empty (an empty labelmap has no voxels for the slice logic to draw)."""
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"{segmentation_node.GetName()} labelmap")
    exported = slicer.modules.segmentations.logic().ExportAllSegmentsToLabelmapNode(
        segmentation_node, labelmap, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
    if not exported:
        raise SystemExit("the segmentation could not be exported to a labelmap")
    scalars = labelmap.GetImageData().GetPointData().GetScalars()
    if scalars is None or scalars.GetRange()[1] == 0:
        logger.warning("the model found none of its structures in this volume: no outlines to show")
        return None
    return labelmap


def segment_legend(segmentation_node) -> list[tuple[str, tuple]]:
    """(name, RGB colour) of every segment, in order."""
    segmentation = segmentation_node.GetSegmentation()
    return [(segment.GetName(), tuple(segment.GetColor()))
            for segment in (segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments()))]


class SliceView:
    """One axial slice view: a slice logic with its slice and composite nodes, rendered offscreen."""

    def __init__(self, scene, name: str, size: int = VIEW_SIZE) -> None:
        # The slice logic keeps a plain pointer to the application logic: hold it for the view's lifetime.
        self.application = slicer.vtkMRMLApplicationLogic()
        self.application.SetMRMLScene(scene)
        self.logic = slicer.vtkMRMLSliceLogic()
        self.logic.SetMRMLScene(scene)
        self.logic.SetMRMLApplicationLogic(self.application)
        self.slice_node = self.logic.AddSliceNode(name)
        self.slice_node.SetOrientationToAxial()
        self.slice_node.SetDimensions(size, size, 1)
        self.composite = self.logic.GetSliceCompositeNode()

    def show(self, background, label=None, outline=True) -> None:
        """Background and label layers; the foreground is the module's (``show_attention``)."""
        self.composite.SetBackgroundVolumeID(background.GetID())
        self.composite.SetLabelVolumeID(label.GetID() if label is not None else None)
        self.composite.SetLabelOpacity(1.0)
        self.slice_node.SetUseLabelOutline(outline)

    def go_to(self, volume_node, fraction: float) -> None:
        """Fit the view to the background and show the axial slice at ``fraction`` (0 bottom .. 1 top) of it."""
        self.logic.FitSliceToAll()
        bounds = [0.0] * 6
        volume_node.GetRASBounds(bounds)
        self.logic.SetSliceOffset(bounds[4] + fraction * (bounds[5] - bounds[4]))

    def render(self) -> np.ndarray:
        """The blended layers as an (H, W, 3) uint8 RGB image, top row first."""
        producer = self.logic.GetImageDataConnection().GetProducer()
        producer.Update()
        image = producer.GetOutputDataObject(0)
        width, height, _ = image.GetDimensions()
        pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
        return pixels.reshape(height, width, -1)[::-1, :, :3].copy()


def compose(panels: list[tuple[np.ndarray, str]], legend: list[tuple[str, tuple]], output: Path, title: str) -> None:
    """The views side by side with a caption each and the segments' colours below, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    figure, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 5.9), dpi=100, facecolor="black")
    for axis, (image, caption) in zip(np.atleast_1d(axes), panels):
        axis.imshow(image, interpolation="nearest")
        axis.set_title(caption, color="white", fontsize=10)
        axis.axis("off")
    figure.suptitle(title, color="white", fontsize=12, y=0.985)
    if legend:
        figure.legend(handles=[Patch(facecolor=colour, label=name) for name, colour in legend], loc="lower center",
                      ncol=len(legend), frameon=False, labelcolor="white", fontsize=9)
    figure.subplots_adjust(left=0.01, right=0.99, top=0.86, bottom=0.07, wspace=0.03)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, facecolor="black")
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="SASAN model file translating CT to MR")
    parser.add_argument("--input", type=Path, help="CT volume file (default: the SASAN phantom CT sample)")
    parser.add_argument("--slice", type=float, default=0.5, help="axial position, 0 (bottom) .. 1 (top)")
    parser.add_argument("--map", type=int, default=1, help="attention map to overlay (1..K)")
    parser.add_argument("--opacity", type=float, default=0.45, help="opacity of the attention overlay")
    parser.add_argument("--ct-window", type=float, nargs=2, default=(-200.0, 600.0), metavar=("LOW", "HIGH"))
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "Resources" / "Screenshots" / "SASANSlicer.png")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from SASANSlicerLib import TranslationLogic
    from SASANSlicerLib.sample_data import phantom_sample_path

    scene = scene_with_logics()
    input_path = arguments.input or phantom_sample_path("CT")
    ct = load_volume(scene, input_path, "CT")
    set_window(ct, *arguments.ct_window)
    result = TranslationLogic().translate(ct, arguments.model, target="MR", device="cpu")
    logger.info(result.summary())
    if not 1 <= arguments.map <= len(result.attentionNodes):
        raise SystemExit(f"--map must lie in 1..{len(result.attentionNodes)}")
    attention_map = result.attentionNodes[arguments.map - 1]
    labels = segmentation_labelmap(scene, result.segmentationNode)

    views = []  # the input view is drawn first: show_attention overlays the map on every view there is
    for name, background, label in (("Red", ct, None), ("Green", result.volumeNode, labels)):
        view = SliceView(scene, name)
        view.show(background, label=label)
        if name == "Green":
            show_attention(attention_map, arguments.opacity, scene)
        view.go_to(ct, arguments.slice)
        views.append(view.render())
    compose([(views[0], f"Input CT\n{input_path.name}"),
             (views[1], f"Translated to MR, segmentation outlines,\n"
                        f"attention map {arguments.map} of {len(result.attentionNodes)} "
                        f"at {round(100 * arguments.opacity)} % opacity")],
            segment_legend(result.segmentationNode) if labels is not None else [],
            arguments.output, f"SASAN in 3D Slicer: CT -> MR with model '{Path(arguments.model).name}'")
    logger.info("wrote %s", arguments.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
