"""What a slice view shows, rendered by slicer-core's own slice logic through the module's display code.

``vtkMRMLSliceLogic`` blends the background, foreground and label layers with VTK's imaging filters (no render
window, so no X server is needed); ``scripts/render_slicer_screenshot.py`` renders the README picture the
same way, and its ``SliceView`` is used here.  A mask volume on the map's grid, rendered as a plain grey
background in the same view, says which pixels a map covers.
"""

import numpy as np
import pytest

pytest.importorskip("slicer", reason="rendering slice views needs the slicer-core wheel")


from SASANSlicerLib.attention import attention_nodes_from_maps, attention_overview_node
from SASANSlicerLib.attention_display import LOW_ATTENTION, show_attention
from SASANSlicerLib.nodes import node_from_volume

from sasan.data.volume import Volume
from scripts.render_slicer_screenshot import SliceView

SHAPE = (4, 32, 32)  # (k, j, i): a few axial slices
ATTENDED = (slice(None), slice(8, 16), slice(8, 16))  # attention 1
FAINT = (slice(None), slice(20, 28), slice(20, 28))  # attention below LOW_ATTENTION, not 0


def grey_node(scene, array: np.ndarray, name: str, window=(0.0, 255.0)):
    """A scalar volume shown in grey with a fixed window (what a CT or MR looks like in a view)."""
    node = node_from_volume(Volume(array), name, scene)
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(*window)
    return node


@pytest.fixture
def views(scene):
    """An input (a bright gradient: every pixel of the volume is visible), one attention map with an attended
    block and a faint block, the maps' overview, a mask of the map, and one axial view of them."""
    image = np.broadcast_to(np.linspace(60.0, 220.0, SHAPE[2], dtype=np.float32), SHAPE).copy()
    source = grey_node(scene, image, "MR")
    attention = np.zeros(SHAPE, np.uint8)
    attention[ATTENDED] = 255
    attention[FAINT] = int(255 * LOW_ATTENTION) // 2
    (map_node,) = attention_nodes_from_maps([Volume(attention)], "MR attention", source)
    overview = attention_overview_node([Volume(attention)], "MR attention (all maps)", source)
    mask = grey_node(scene, attention.astype(np.float32), "mask")
    view = SliceView(scene, "Red", size=96)
    view.show(source, outline=False)  # labels filled, as Slicer shows them by default
    view.go_to(source, 0.5)
    return view, source, map_node, overview, mask


def mask_pixels(view, mask, source) -> np.ndarray:
    """The mask as the view shows it (grey value per pixel, 0 where no map voxel contributes)."""
    view.show(mask, outline=False)
    pixels = view.render()[..., 0].astype(int)
    view.show(source, outline=False)
    return pixels


def test_where_a_map_is_zero_or_faint_the_input_shows_unchanged(views):
    view, source, map_node, overview, mask = views
    plain = view.render()
    covered = mask_pixels(view, mask, source)
    inside = plain.sum(axis=-1) > 0  # the volume's pixels (outside it the view is black anyway)
    zero, faint, attended = inside & (covered == 0), covered == int(255 * LOW_ATTENTION) // 2, covered == 255
    assert zero.sum() > 2000 and faint.sum() > 100 and attended.sum() > 100

    assert show_attention(map_node, 0.5, source.GetScene()) == 1
    overlay = view.render()
    np.testing.assert_array_equal(overlay[zero], plain[zero])
    np.testing.assert_array_equal(overlay[faint], plain[faint])
    assert (np.abs(overlay[attended].astype(int) - plain[attended]).sum(axis=-1) > 30).all()

    map_node.GetDisplayNode().SetApplyThreshold(False)  # what the module showed before: the whole slice tinted
    tinted = view.render()
    assert (np.abs(tinted[zero].astype(int) - plain[zero]).sum(axis=-1) > 30).mean() > 0.9


def test_where_the_overview_is_zero_the_input_shows_unchanged(views):
    view, source, map_node, overview, mask = views
    plain = view.render()
    covered = mask_pixels(view, mask, source)
    inside = plain.sum(axis=-1) > 0
    zero, attended = inside & (covered == 0), covered == 255

    show_attention(overview, 0.5, source.GetScene())
    overlay = view.render()
    np.testing.assert_array_equal(overlay[zero], plain[zero])
    assert (np.abs(overlay[attended].astype(int) - plain[attended]).sum(axis=-1) > 30).all()


def test_each_segment_colour_appears_where_its_segment_lies(scene):
    """The module's segmentation, drawn filled as the README picture draws it (a labelmap exported by Slicer's
    Segmentations logic): each structure's own colour covers its block, and the input shows elsewhere."""
    from SASANSlicerLib.segmentation import segmentation_node_from_labels

    from sasan.config import LabelSpec
    from scripts.render_slicer_screenshot import segmentation_labelmap

    image = np.full(SHAPE, 120.0, np.float32)
    source = grey_node(scene, image, "MR")
    labels = np.zeros(SHAPE, np.uint8)
    blocks = {1: (slice(None), slice(4, 12), slice(4, 12)), 2: (slice(None), slice(18, 28), slice(14, 26))}
    for value, block in blocks.items():
        labels[block] = value
    specs = [LabelSpec("LV blood", 1, [1.0, 0.0, 0.0]), LabelSpec("Myocardium", 2, [0.0, 0.0, 1.0])]
    segmentation = segmentation_node_from_labels(Volume(labels), specs, "MR segmentation", source)
    labelmap = segmentation_labelmap(scene, segmentation)
    masks = {value: grey_node(scene, (labels == value).astype(np.float32) * 255, f"mask {value}")
             for value in blocks}

    view = SliceView(scene, "Red", size=96)
    view.show(source, outline=False)
    view.go_to(source, 0.5)
    plain = view.render()
    where, touched = {}, np.zeros(plain.shape[:2], bool)
    for value, mask in masks.items():
        view.show(mask, outline=False)
        shown = view.render()[..., 0]
        where[value], touched = shown == 255, touched | (shown > 0)  # inside / touching the block
    view.show(source, labelmap, outline=False)
    drawn = view.render()

    for spec in specs:
        pixels = drawn[where[spec.value]]
        assert len(pixels) > 100
        expected = np.rint(np.asarray(spec.color) * 255)
        assert (np.abs(pixels.astype(int) - expected).max(axis=-1) <= 2).mean() > 0.95, spec.name
    elsewhere = (plain.sum(axis=-1) > 0) & ~touched
    assert elsewhere.sum() > 2000
    np.testing.assert_array_equal(drawn[elsewhere], plain[elsewhere])
