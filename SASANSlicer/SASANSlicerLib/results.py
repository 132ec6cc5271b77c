"""One translation run's outputs into the scene: all of them, named and placed beside the input, or none."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from sasan.config import LabelSpec
from sasan.data.volume import Volume

from . import attention, attention_display, hierarchy
from .outcome import TranslationNodes
from .nodes import check_on_grid_of, node_from_volume, update_node_from_volume
from .segmentation import segmentation_node_from_labels
from .transaction import SceneTransaction


@dataclass
class TranslationOutput:
    """What a run produced, read back from its process; every volume lies on the input's voxel grid.

    ``segmentation`` holds the label values of ``labels``; ``attention`` holds uint8 maps (0..255).
    ``device``: where the run finished; ``notes``: what the engine had to change on the way, for the user;
    ``warning``: the engine's input check, when the input does not look like the model's training scans ("").
    """

    image: Volume
    segmentation: Optional[Volume] = None
    labels: list[LabelSpec] = field(default_factory=list)
    attention: list[Volume] = field(default_factory=list)
    device: str = ""
    notes: list[str] = field(default_factory=list)
    warning: str = ""


def add_results_to_scene(input_node, output: TranslationOutput, target: str, output_node=None) -> TranslationNodes:
    """Add the translated volume, segmentation and attention nodes of ``output`` beside ``input_node``; the
    returned nodes carry the run's device and notes (the input check's warning first).

    New nodes are named after the input (``hierarchy``'s names); ``output_node``, if given, receives the
    translated voxels instead of a new node and keeps its name and place (it takes the input's parent
    transform, to overlay it).  Attention nodes go into a folder of their own.  All or nothing: if
    anything fails no node is added and ``output_node`` is untouched; the attention maps of an earlier
    run on the same input then stay the current ones.
    """
    scene = input_node.GetScene() if input_node is not None else None
    if scene is None:
        raise ValueError("the input volume is no longer in the scene; nothing was added")
    check_on_grid_of(output.image, input_node, "the translated image")
    if output.segmentation is not None and not output.labels:
        raise ValueError("a segmentation came without the structures' names and colours (labels)")
    name = input_node.GetName()
    previous_maps, previous_overview = attention_display.find_attention_nodes(input_node)
    result = TranslationNodes(volumeNode=output_node, device=output.device, warning=output.warning,
                              notes=[output.warning, *output.notes] if output.warning else list(output.notes))
    with SceneTransaction(scene):
        if output.segmentation is not None:
            result.segmentationNode = segmentation_node_from_labels(
                output.segmentation, output.labels, hierarchy.segmentation_name(name), input_node
            )
            hierarchy.place_next_to(result.segmentationNode, input_node)
        if output.attention:
            folder = hierarchy.create_folder_next_to(hierarchy.attention_folder_name(name), input_node)
            result.attentionNodes = attention.attention_nodes_from_maps(
                output.attention, hierarchy.attention_base_name(name), input_node
            )
            result.attentionOverviewNode = attention.attention_overview_node(
                output.attention, hierarchy.attention_overview_name(name), input_node
            )
            for node in [*result.attentionNodes, result.attentionOverviewNode]:
                hierarchy.place_in_folder(node, folder, input_node)
        if output_node is None:
            result.volumeNode = node_from_volume(output.image, hierarchy.translated_name(name, target), scene)
            hierarchy.place_next_to(result.volumeNode, input_node)
    if output_node is not None:  # last, once nothing else can fail, so a failed run leaves it as it was
        update_node_from_volume(output_node, output.image)
        output_node.SetAndObserveTransformNodeID(input_node.GetTransformNodeID())
    if output.attention:
        for node in [*previous_maps, previous_overview]:
            if node is not None:
                attention_display.release_attention_node(node)
    return result
