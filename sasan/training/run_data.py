"""The data of one run: per-domain slice datasets, held-out volumes and dataset-level intensity maps.

Batches are drawn *statelessly*: the slice indices of step ``s`` on rank ``r`` come from a generator
seeded with (seed, s, r, domain), and augmentation is seeded by (seed, s, item). The data order after a
resume is therefore exactly the one an uninterrupted run would have seen, with nothing to save.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import RunConfig, crop_to_dict
from ..data.domains import PreparedVolume, build_slice_dataset, load_domain
from ..data.preprocess import average_intensity_map
from ..data.slices import SliceDataset
from .run_folder import INTENSITY_FILE

log = logging.getLogger(__name__)


@dataclass
class RunData:
    train: dict[str, SliceDataset]               # modality -> training slices
    validation: dict[str, list[PreparedVolume]]  # modality -> validation volumes (labels kept for scoring)
    intensity: dict[str, dict]                   # modality -> {"config": ..., "reference": ...}


def prepare_run_data(config: RunConfig) -> RunData:
    """Load both domains, split by subject, and build augmented 2.5D slice datasets.

    Reads the training and validation subjects only: the test subjects are left to the final scoring.
    """
    train, validation, intensity = {}, {}, {}
    loaded = {}
    for domain in (config.data.source, config.data.target):
        volumes = load_domain(domain, config.data, split="train")
        if not volumes:
            raise ValueError(f"no training volumes found for {domain.modality} ({domain.layout} layout)")
        loaded[domain.modality] = volumes
    if config.training.setup == "paired":
        _require_pairs(loaded)
    for domain in (config.data.source, config.data.target):
        volumes = loaded[domain.modality]
        if not domain.labelled:  # the labels of an unlabelled domain stay unseen by training
            volumes = [PreparedVolume(v.subject, v.volume, v.axis, v.stack, None, v.intensity) for v in volumes]
        train[domain.modality] = build_slice_dataset(volumes, config.data, augment=True, seed=config.training.seed)
        validation[domain.modality] = load_domain(domain, config.data, split="validation")
        intensity[domain.modality] = {
            "config": {"method": domain.normalization.method, "percentiles": domain.normalization.percentiles,
                       "window": domain.normalization.window},
            "reference": average_intensity_map([v.intensity for v in volumes]).to_dict(),
            "crop": crop_to_dict(domain.crop),
        }
        log.info("%s: %d training volumes (%d slices), %d for validation", domain.modality, len(volumes),
                 len(train[domain.modality]), len(validation[domain.modality]))
    if config.training.setup == "paired":
        sizes = {m: len(d) for m, d in train.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"the paired set-up needs co-registered pairs with equal slice counts; got {sizes}")
    return RunData(train, validation, intensity)


def _require_pairs(volumes: dict[str, list[PreparedVolume]]) -> None:
    """The paired set-up draws the same slice index on both sides: refuse domains whose subjects or slice
    counts differ (``volumes``: modality -> training volumes, source first)."""
    (source, first), (target, second) = volumes.items()
    ids = ([v.subject.id for v in first], [v.subject.id for v in second])
    if ids[0] != ids[1]:
        only = sorted(set(ids[0]) ^ set(ids[1]))
        raise ValueError(f"the paired set-up needs the same co-registered subjects in both domains; {source} has "
                         f"{', '.join(ids[0])} and {target} has {', '.join(ids[1])} (unmatched: {', '.join(only)})")
    for a, b in zip(first, second):
        if len(a.stack) != len(b.stack):
            raise ValueError(f"the paired set-up needs co-registered pairs: subject {a.subject.id} has "
                             f"{len(a.stack)} {source} slices and {len(b.stack)} {target} slices")


def write_intensity(run_dir: Path, intensity: dict) -> None:
    (Path(run_dir) / INTENSITY_FILE).write_text(json.dumps(intensity, indent=2), encoding="utf-8")


def read_intensity(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / INTENSITY_FILE).read_text(encoding="utf-8"))


def step_generator(seed: int, step: int, rank: int, salt: int) -> torch.Generator:
    """The random stream of one (run seed, step, rank, use): the same after a resume, apart between uses."""
    return torch.Generator().manual_seed(hash((seed, step, rank, salt)) % (2 ** 63))


def draw_batch(dataset: SliceDataset, batch_size: int, step: int, seed: int, salt: int,
               rank: int = 0, world_size: int = 1, indices: torch.Tensor | None = None) -> dict:
    """The batch of ``step``: items drawn from this rank's shard (every ``world_size``-th slice).

    ``indices`` reuses another domain's draw (paired data: same slices on both sides).
    """
    if indices is None:
        generator = step_generator(seed, step, rank, salt)
        shard = torch.arange(rank, len(dataset), world_size)
        indices = shard[torch.randint(len(shard), (batch_size,), generator=generator)]
    dataset.set_epoch(step)
    items = [dataset[int(i)] for i in indices]
    batch = {key: torch.stack([item[key] for item in items]) for key in ("image", "label")}
    batch["indices"] = indices
    return batch
