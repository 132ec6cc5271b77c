"""Model files for the web tests, made with the engine (random weights, real files):

- ``write_tiny_model``: the Slicer glue tests' 32² model, with its attention maps sharpened so that each
  attends to some places and not at all to others (a fresh network spreads attention evenly, which would
  leave nothing transparent to check);
- ``write_slow_model``: larger, slow enough on the CPU to cancel a run mid-way and to scroll slices while
  it runs.
"""
from pathlib import Path

from fixtures import write_tiny_model as write_model

# Some 0.2-0.4 s per slice on two CPU cores at 192 x 192 pixels: a phantom run takes 15 s or more.
SLOW_ARCHITECTURE = {"num_maps": 4, "attention_widths": [16, 32, 64, 128], "encoder_widths": [16, 32, 64, 64],
                     "decoder_widths": [64, 32, 16], "head_width": 8, "spade_hidden": 32, "segmenter_width": 32,
                     "segmenter_depth": 4}
MAP_SHARPNESS = 40.0  # the attention logits' scale: softmax maps near 0 or 1


def write_tiny_model(path: Path) -> Path:
    """32² input, 2 attention maps, 2 structures (LV blood, ascending aorta): CT -> MR, MR U-Net."""
    return write_model(path, seed=0, sharpen_maps=MAP_SHARPNESS, directions=[["CT", "MR"]])


def write_slow_model(path: Path) -> Path:
    """192² input, 4 attention maps, the same structures: CT -> MR with an MR U-Net."""
    return write_model(path, seed=0, name="slow", architecture=dict(SLOW_ARCHITECTURE), image_size=192,
                       directions=[["CT", "MR"]])
