"""A tiny phantom run configuration shared by the training tests and benchmarks/kill_resume.py (32x32 slices,
narrow networks)."""
import copy

from sasan.config import config_from_dict
from sasan.data.phantom import LABELS

try:
    from fixtures import TINY_TRAINING_MODEL  # pytest puts Testing/ on sys.path
except ModuleNotFoundError:  # benchmarks/kill_resume.py, run from the repository root
    from Testing.fixtures import TINY_TRAINING_MODEL

TINY_RUN = {
    "name": "test_tiny",
    "data": {
        "source": {"modality": "CT", "layout": "phantom", "labelled": False,
                   "normalization": {"method": "window", "window": [-300.0, 500.0]}},
        "target": {"modality": "MR", "layout": "phantom", "labelled": True,
                   "normalization": {"method": "percentile", "percentiles": [0.5, 99.5]}},
        "image_size": 32, "phantom_subjects": 4, "phantom_size": 32,
        "labels": [{"name": l.name, "value": l.value, "color": list(l.color)} for l in LABELS],
    },
    "model": copy.deepcopy(TINY_TRAINING_MODEL),
    "training": {"steps": 4, "pretrain_attention_steps": 2, "segmenter_steps": 2, "batch_size": 2,
                 "lr": 0.0002, "attention_lr": 0.001, "ema_decay": 0.5, "threads": 1, "deterministic": True,
                 "checkpoint_every": 2, "validate_every": 4, "log_every": 2, "image_every": 4},
}

# The CycleGAN baseline at the tiny size: ResNet generators, L1 cycle, CycleGAN's identity weight, no attention.
CYCLEGAN = {"model": {"generator": "resnet", "attention": False, "resnet_width": 4, "resnet_blocks": 2},
            "losses": {"cycle_ssim": False, "identity": 5.0, "use_auxiliary": False, "use_regularization": False,
                       "use_segmentation_discriminator": False}}


def tiny_config(**sections):
    """The tiny run with ``sections`` merged in, e.g. ``training={"steps": 10}``."""
    mapping = copy.deepcopy(TINY_RUN)
    for section, values in sections.items():
        if isinstance(values, dict):
            mapping.setdefault(section, {}).update(values)
        else:
            mapping[section] = values
    return config_from_dict(mapping)
