"""Model files for the web tests, made with the engine (random weights, real files):

- ``write_tiny_model``: the Slicer glue tests' 32² model, with its attention maps sharpened so that each
  attends to some places and not at all to others (a fresh network spreads attention evenly, which would
  leave nothing transparent to check);
- ``write_slow_model``: larger, slow enough on the CPU to cancel a run mid-way and to scroll slices while
  it runs.
"""
from pathlib import Path

from slicer_glue_helpers import TINY_ARCHITECTURE, TINY_LABELS, TINY_NORMALIZATION

# Some 0.2-0.4 s per slice on two CPU cores at 192 x 192 pixels: a phantom run takes 15 s or more.
SLOW_ARCHITECTURE = {"num_maps": 4, "attention_widths": [16, 32, 64, 128], "encoder_widths": [16, 32, 64, 64],
                     "decoder_widths": [64, 32, 16], "head_width": 8, "spade_hidden": 32, "segmenter_width": 32,
                     "segmenter_depth": 4}
MAP_SHARPNESS = 40.0  # the attention logits' scale: softmax maps near 0 or 1


def _write(path: Path, name: str, architecture: dict, image_size: int, sharpen: bool, seed: int = 0) -> Path:
    import torch

    from sasan import bundle
    from sasan.card import ModelCard

    card = ModelCard(name=name, modalities=["CT", "MR"], directions=[["CT", "MR"]], architecture=dict(architecture),
                     context=3, image_size=image_size, normalization=dict(TINY_NORMALIZATION), labels=TINY_LABELS,
                     segmenters=["MR"])
    torch.manual_seed(seed)  # the same file every run: the checks on its pixels do not depend on chance
    networks = bundle.expected_networks(card)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        classify = networks["segmenter.MR"].classify  # classes that depend on the image, as in the glue tests
        classify.weight.copy_(torch.randn(classify.weight.shape, generator=generator))
        classify.bias.zero_()
        if sharpen:
            networks["attention.CT"].to_maps.weight.mul_(MAP_SHARPNESS)
    return bundle.save(path, card, networks)


def write_tiny_model(path: Path) -> Path:
    """32² input, 2 attention maps, 2 structures (LV blood, ascending aorta): CT -> MR, MR U-Net."""
    return _write(path, "tiny", TINY_ARCHITECTURE, 32, sharpen=True)


def write_slow_model(path: Path) -> Path:
    """192² input, 4 attention maps, the same structures: CT -> MR with an MR U-Net."""
    return _write(path, "slow", SLOW_ARCHITECTURE, 192, sharpen=False)
