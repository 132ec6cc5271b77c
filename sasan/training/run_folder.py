"""The run folder: what a training run keeps in it, under which names, and where it goes by default.

    <run>/config.yaml         the resolved configuration, defaults included (``read_run_config``)
    <run>/intensity.json      the intensity maps fitted to the training data (the model card's normalisation)
    <run>/checkpoints/        step_<8 digits>.ckpt, the newest ones (``checkpoint``)
    <run>/tensorboard/        TensorBoard logs (``feedback``)
    <run>/model.safetensors   the model file, when a run is exported into its own folder (the Trainer module)
    <run>/STOP                asks a running ``sasan train`` to stop after its current step (``stop``)

Nothing heavier than the configuration schema is imported, so the Slicer modules can read these names
before torch is installed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from ..config import RunConfig, config_from_dict

CONFIG_FILE = "config.yaml"
INTENSITY_FILE = "intensity.json"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
MODEL_FILE = "model.safetensors"
STOP_FILE = "STOP"
# What a run folder may hold; anything else means it is some other folder, which a run must not use.
RUN_FILES = frozenset({CONFIG_FILE, INTENSITY_FILE, CHECKPOINT_DIR, TENSORBOARD_DIR, MODEL_FILE, STOP_FILE})
SEGMENTER_SUFFIX = "_segmenter"


def default_run_folder(config: RunConfig, segmenter: bool = False) -> Path:
    """Where a run goes without ``--output``: the configuration's ``output``; ``<output>_segmenter`` for the
    U-Net alone (``sasan train-segmenter``), so that both can be trained from one configuration."""
    return Path(config.output + SEGMENTER_SUFFIX if segmenter else config.output)


def read_run_config(run_dir: Union[str, Path]) -> RunConfig:
    """The configuration a run was trained with (its ``config.yaml``)."""
    import yaml

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a SASAN run folder (no {CONFIG_FILE})")
    return config_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))
