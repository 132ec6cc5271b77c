"""The tiny networks, model card and model file that the tests share, typed out once here.

Imported as ``fixtures``: pytest puts ``Testing/`` on ``sys.path`` (the folder of the root conftest.py).
``Testing.fixtures`` is the same file for code run from the repository root (benchmarks/kill_resume.py
through Testing/training/tiny.py).

- ``TINY_ARCHITECTURE``: a model file's networks, 32² slices, 2 attention maps, widths of 4 and 8;
- ``TINY_TRAINING_MODEL``: the training tests' ``model`` section (a wider decoder, and the discriminators);
- ``tiny_card(**overrides)``: a valid CT <-> MR card with an MR U-Net and two structures;
- ``write_tiny_model(path, **overrides)``: a real model file with random weights, saved by ``sasan.bundle``.
"""
import copy
from pathlib import Path

TINY_ARCHITECTURE = {"num_maps": 2, "attention_widths": [4, 8], "encoder_widths": [4, 8, 8, 8],
                     "decoder_widths": [8, 4, 4], "head_width": 4, "spade_hidden": 4, "segmenter_width": 4,
                     "segmenter_depth": 2}
TINY_DISCRIMINATORS = {"image_discriminator_widths": [4, 8], "segmentation_discriminator_widths": [4, 4]}
TINY_TRAINING_MODEL = {**TINY_ARCHITECTURE, "decoder_widths": [8, 8, 4], **TINY_DISCRIMINATORS}
TINY_NORMALIZATION = {
    "CT": {"config": {"method": "window", "percentiles": [2.0, 98.0], "window": [-200.0, 400.0]},
           "reference": {"method": "window", "low": -200.0, "high": 400.0, "mean": 0.0, "std": 1.0}},
    "MR": {"config": {"method": "percentile", "percentiles": [1.0, 99.0], "window": [0.0, 1.0]},
           "reference": {"method": "percentile", "low": 10.0, "high": 900.0, "mean": 300.0, "std": 150.0}},
}
TINY_LABELS = [{"name": "LV blood", "value": 500, "color": [0.85, 0.15, 0.2]},
               {"name": "ascending aorta", "value": 820, "color": [0.95, 0.85, 0.25]}]


def tiny_card(**overrides):
    """A valid card for the tiny networks: CT <-> MR, 32² input, context 3, an MR U-Net, ``TINY_LABELS``;
    ``overrides`` replace any of its fields (``name``, ``directions``, ``normalization``, ...)."""
    from sasan.card import ModelCard

    fields = {"name": "tiny", "modalities": ["CT", "MR"], "directions": [["CT", "MR"], ["MR", "CT"]],
              "architecture": copy.deepcopy(TINY_ARCHITECTURE), "context": 3, "image_size": 32,
              "normalization": copy.deepcopy(TINY_NORMALIZATION), "labels": copy.deepcopy(TINY_LABELS),
              "segmenters": ["MR"]}
    fields.update(overrides)
    return ModelCard(**fields)


def write_tiny_model(path: Path, *, seed=None, distinct_classes: bool = True, sharpen_maps=None,
                     **overrides) -> Path:
    """Save the networks of ``tiny_card(**overrides)`` with random weights to ``path`` (``sasan.bundle.save``).

    ``seed``: seed torch first, for the same file every run. ``distinct_classes``: redraw each segmenter's last
    layer without bias so that its classes depend on the image (a fresh network's biases alone decide one class
    everywhere, which would make segment comparisons vacuous). ``sharpen_maps``: scale the attention logits of
    every modality by this factor, so that the maps are near 0 or 1 rather than spread evenly.
    """
    import torch

    from sasan import bundle
    from sasan.models.translator import attention_name, segmenter_name

    card = tiny_card(**overrides)
    if seed is not None:
        torch.manual_seed(seed)
    networks = bundle.expected_networks(card)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        if distinct_classes:
            for modality in card.segmenters:
                classify = networks[segmenter_name(modality)].classify
                classify.weight.copy_(torch.randn(classify.weight.shape, generator=generator))
                classify.bias.zero_()
        if sharpen_maps is not None:
            for source, _ in card.directions:
                networks[attention_name(source)].to_maps.weight.mul_(sharpen_maps)
    return bundle.save(path, card, networks)
