"""What the full and the quick demo share: the table's rows (names, order, the untranslated ones' scoring),
the phantom's description a demo model card carries, stage headings and the printed summary."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from sasan.baselines import UntranslatedSegmenter, histogram_matching, no_adaptation, reference_quantiles
from sasan.config import DataConfig, RunConfig
from sasan.data.domains import load_domain, phantom_subjects
from sasan.protocol import (
    FIGURES_DIR,
    RESULTS_CSV,
    RESULTS_MARKDOWN,
    VOLUMES_DIR,
    HeldOutVolume,
    ProtocolResult,
    run_methods,
)
from sasan.training.checkpoint import list_checkpoints

log = logging.getLogger(__name__)

NO_ADAPTATION = "W/o adaptation"
HISTOGRAM_MATCHING = "Histogram matching"
CYCLEGAN = "CycleGAN"
SASAN_WITHOUT_SPADE = "SASAN w/o SPADE (ablation)"
SASAN = "SASAN"
SASAN_AUGMENTED = "SASAN w/ aug."
SASAN_SHORT_RUN = "SASAN (short run)"
# The table's rows, in order. Full demo: all but the short run ("w/ aug." where the preset asks); quick demo:
# the first two, SASAN (the shipped model) and the short run.
ROW_ORDER = (NO_ADAPTATION, HISTOGRAM_MATCHING, CYCLEGAN, SASAN_WITHOUT_SPADE, SASAN, SASAN_AUGMENTED, SASAN_SHORT_RUN)


class Stages:
    """Numbered stage headings with the elapsed time, so a long run shows where it is."""

    def __init__(self, total: int) -> None:
        self.total, self.number, self.started = total, 0, time.monotonic()

    def begin(self, title: str) -> None:
        self.number += 1
        log.info("[%d/%d] %s (%.0f s elapsed)", self.number, self.total, title, self.elapsed())

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def forget_previous_run(run_dir: Path) -> None:
    """Delete the checkpoints a previous demo left in its own run folder (reached only with --overwrite)."""
    for checkpoint in list_checkpoints(run_dir):
        log.info("replacing the previous demo run's checkpoint %s", checkpoint)
        checkpoint.unlink()


def score_baselines(config: RunConfig, network: torch.nn.Module, volumes: list[HeldOutVolume], output: Path,
                    device: str, overwrite: bool) -> ProtocolResult:
    """The "W/o adaptation" and "Histogram matching" rows of ``config``'s data, with the MR U-Net ``network``."""
    unet = UntranslatedSegmenter(network, config.data.image_size, config.data.context, config.data.axis, device)
    training_targets = load_domain(config.data.target, config.data, split="train")
    reference = reference_quantiles([item.volume.array for item in training_targets])
    source = config.data.source
    methods = {NO_ADAPTATION: no_adaptation(unet, source.normalization, source.crop),
               HISTOGRAM_MATCHING: histogram_matching(unet, config.data.target.normalization, reference, source.crop)}
    return run_methods(methods, volumes, config.data.labels, output, target=config.data.target.modality,
                       overwrite=overwrite)


def subject_counts(data: DataConfig) -> str:
    """"12 CT and 12 MR subjects", or "24 CT and 12 MR subjects" when a domain has its own count."""
    return " and ".join(f"{phantom_subjects(d, data)} {d.modality}" for d in (data.source, data.target)) \
        + " subjects"


def phantom_description(data: DataConfig) -> str:
    """The phantom and subject split of ``data``, as a demo model's card names the data it trained on (the
    split's training subjects): a model whose card names other data was not trained on this split's."""
    return (f"phantom seed {data.phantom_seed}, {subject_counts(data)}, {data.phantom_size} voxels across; "
            f"split seed {data.split_seed}, test fraction {data.test_fraction}, validation fraction "
            f"{data.validation_fraction}")


def print_summary(tables: str, origins: dict[str, str], seconds: float, mode: str, model_file: Path, output: Path,
                  target: str) -> None:
    """The command's result on stdout: the tables, where each row's networks come from, where everything went."""
    print()
    print(tables)
    print("Where each row's networks come from:")
    for method in sorted(origins, key=ROW_ORDER.index):
        print(f"- {method}: {origins[method]}")
    print()
    print(f"Finished in {seconds / 60:.1f} min ({mode} mode).")
    print(f"SASAN model file:  {model_file}")
    print(f"volumes (NIfTI):   {output / VOLUMES_DIR}")
    print(f"figures:           {output / FIGURES_DIR}")
    print(f"tables:            {output / RESULTS_CSV}, {output / RESULTS_MARKDOWN}")
    print(f"try it:            sasan translate CT.nii.gz --model {model_file} --to {target} "
          "-o translated.nii.gz --segmentation segmentation.nii.gz")


def combine(results: list[ProtocolResult]) -> ProtocolResult:
    """One result with the rows ordered by ``ROW_ORDER`` (the table's row order)."""
    combined = ProtocolResult()
    for result in results:
        combined.volumes += result.volumes
        combined.figures += result.figures
        combined.segmentation_rows += result.segmentation_rows
        combined.image_rows += result.image_rows
    order = {method: index for index, method in enumerate(ROW_ORDER)}
    combined.segmentation_rows.sort(key=lambda row: order.get(row.method, len(order)))
    return combined
