"""Turn a run folder into a model file (``sasan export RUN_DIR -o model.safetensors``).

The card also gets the fingerprint of the run's training scans (``sasan.domain``), read again from the
run's data folders; where they cannot be read, the model file has no input check and the log says why.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
from pathlib import Path
from typing import Optional

from .. import __version__
from ..bundle import save
from ..card import ModelCard
from ..config import RunConfig
from ..domain.from_run import domain_from_run
from ..models.translator import segmenter_name
from .checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from .networks import ExponentialAverage, SASANNetworks
from .run_data import read_intensity
from .run_folder import read_run_config

log = logging.getLogger(__name__)


def load_run_networks(run_dir: Path) -> tuple[RunConfig, SASANNetworks, dict, int]:
    """(config, networks with the last checkpoint's weights, exported modules (EMA if any), step)."""
    config = read_run_config(run_dir)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise CheckpointError(f"{run_dir} has no checkpoint yet")
    state = load_checkpoint(checkpoint)
    nets = SASANNetworks(config)
    nets.load_state_dict(state["networks"])
    exported = nets.exported()
    if "ema" in state:
        ema = ExponentialAverage(nets.translator(), config.training.ema_decay)
        ema.load_state_dict(state["ema"])
        exported.update(ema.shadow)
    return config, nets, exported, int(state["step"])


def build_card(config: RunConfig, run_dir: Path, step: int, segmenters: list[str],
               description: str = "", provenance: Optional[dict] = None) -> ModelCard:
    source, target = config.data.source, config.data.target
    return ModelCard(
        name=config.name,
        modalities=[source.modality, target.modality],
        directions=[[source.modality, target.modality], [target.modality, source.modality]],
        architecture=dataclasses.asdict(config.model),
        context=config.data.context,
        image_size=config.data.image_size,
        normalization=read_intensity(run_dir),
        labels=[dataclasses.asdict(label) for label in config.data.labels],
        segmenters=segmenters,
        slicing_axis="axial" if config.data.axis == "auto" else config.data.axis,
        description=description or f"SASAN {source.modality} <-> {target.modality} ({config.training.setup})",
        provenance={"run": config.name, "steps": step, "setup": config.training.setup,
                    "data": f"{source.layout}:{source.modality} / {target.layout}:{target.modality}",
                    "sasan_version": __version__,
                    "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    **(provenance or {})},
    )


def export_run(run_dir: Path, output: Path, *, segmenter_run: Optional[Path] = None, half: bool = False,
               overwrite: bool = False, description: str = "", provenance: Optional[dict] = None) -> Path:
    """Write the run's translator (EMA weights when averaged) and segmenter(s) as one model file.

    ``segmenter_run`` takes the target modality's U-Net from another run folder (e.g. the U-Net trained
    once on real target images and shared by every method, as in the paper's protocol).
    """
    config, nets, exported, step = load_run_networks(Path(run_dir))
    target = config.data.target.modality
    if segmenter_run is not None:
        seg_config, seg_nets, _, _ = load_run_networks(Path(segmenter_run))
        if seg_nets.segmenter is None:
            raise ValueError(f"{segmenter_run} trained no segmenter (training.segmenter_steps is 0)")
        if seg_config.model.segmenter_width != config.model.segmenter_width or \
                seg_config.model.segmenter_depth != config.model.segmenter_depth or \
                seg_config.num_classes != config.num_classes:
            raise ValueError(f"the segmenter of {segmenter_run} has another size or label set than this run's")
        exported[segmenter_name(target)] = seg_nets.segmenter
        if nets.segmenter is None:  # the card's architecture must describe the shipped U-Net
            config.training.segmenter_steps = seg_config.training.segmenter_steps
    segmenters = [target] if segmenter_name(target) in exported else []
    card = build_card(config, Path(run_dir), step, segmenters, description, provenance)
    card.domain = training_domain(config)
    return save(output, card, exported, half=half, overwrite=overwrite)


def training_domain(config: RunConfig) -> dict:
    """The card's ``domain`` from the run's training and validation scans; ``{}`` when they cannot be read."""
    try:
        return domain_from_run(config)
    except (OSError, ValueError) as error:
        log.warning("the model file gets no input check: the run's training scans could not be read (%s)", error)
        return {}
