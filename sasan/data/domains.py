"""From a domain's configuration to normalised slice stacks and a training dataset (the trainer's glue)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from sasan.atomic import staged_folder
from sasan.config import ConfigError, CropConfig, DataConfig, DomainConfig, LabelSpec, NormalizationConfig
from sasan.data.crop import crop_region, crop_volume
from sasan.data.geometry import slicing_axis, to_slice_stack
from sasan.data.io import check_finite, read_labels, read_volume
from sasan.data.layouts import (
    SplitError,
    Subject,
    SubjectSplit,
    find_subjects,
    named_split,
    split_subjects,
    unknown_named_subjects,
)
from sasan.data.preprocess import IntensityMap, fit_intensity_map, normalize
from sasan.data.slices import SliceDataset
from sasan.data.volume import Volume
from sasan.resources import cache_folder

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test", "all")


@dataclass
class PreparedVolume:
    """One subject ready for training: raw volume (cropped as its domain asks), slicing axis and
    normalised stacks ``(n, h, w)`` of that volume."""

    subject: Subject
    volume: Volume
    axis: int
    stack: np.ndarray
    labels: Optional[np.ndarray]
    intensity: IntensityMap


def prepare_volume(
    subject: Subject,
    normalization: NormalizationConfig,
    labels: list[LabelSpec],
    axis_preference: str = "auto",
    crop: Optional[CropConfig] = None,
) -> PreparedVolume:
    """Read, check, crop and normalise one subject; its labels are read only when ``labels`` is not empty.

    The intensity map is fitted to the cropped volume, as inference fits it (``sasan.inference.translation``).
    """
    volume = read_volume(subject.image)
    check_finite(volume, str(subject.image))
    label_volume = None
    if subject.label is not None and labels:
        label_volume = read_labels(subject.label, labels, reference=volume)
    axis = slicing_axis(volume, axis_preference)
    if crop is not None:
        region = crop_region(volume, crop, axis)
        volume = crop_volume(volume, region)
        label_volume = None if label_volume is None else crop_volume(label_volume, region)
    intensity = fit_intensity_map(volume.array, normalization)
    stack = np.ascontiguousarray(to_slice_stack(normalize(volume.array, intensity), axis))
    label_stack = None if label_volume is None else np.ascontiguousarray(to_slice_stack(label_volume.array, axis))
    return PreparedVolume(subject, volume, axis, stack, label_stack, intensity)


def load_domain(domain: DomainConfig, data: DataConfig, *, split: str = "train",
                cropped: bool = True) -> list[PreparedVolume]:
    """Find, split and prepare the subjects of one domain (``split``: "train", "validation", "test" or "all").

    Training reads "train" and "validation" only; "test" is for the final scoring (``sasan.protocol``).

    ``cropped``: apply the domain's crop (training); evaluation takes whole volumes (``cropped=False``)
    and lets each method crop as its model does.

    The phantom layout is generated once into a cache folder (``$SASAN_CACHE``, default
    ``~/.cache/sasan``) and then read as a folder layout.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    subjects = domain_subjects(domain, data)
    if split != "all":
        subjects = getattr(_split(subjects, domain, data), split)
    # Label files are read whenever they exist: held-out labels score every domain. Training strips
    # them from a domain marked unlabelled (``training.run_data``), so they never leak into learning.
    labels = data.labels
    if domain.labelled and subjects and all(s.label is None for s in subjects):
        raise ValueError(
            f"the {domain.modality} domain is marked labelled but none of its {split} subjects has a label file"
        )
    crop = domain.crop if cropped else None
    prepared = [prepare_volume(s, domain.normalization, labels, data.axis, crop) for s in subjects]
    log.info("%s domain, %s split: %d volumes, %d slices", domain.modality, split, len(prepared),
             sum(p.stack.shape[0] for p in prepared))
    return prepared


def domain_subjects(domain: DomainConfig, data: DataConfig) -> list[Subject]:
    """Every subject of one domain, before any split."""
    if domain.layout == "phantom":
        return find_subjects("folder", _modality_folder(_phantom_root(data, phantom_subjects(domain, data)),
                                                        domain.modality), domain.modality)
    if not domain.root:
        raise ValueError(f"the {domain.layout!r} layout of the {domain.modality} domain needs a data folder (root)")
    return find_subjects(domain.layout, Path(domain.root), domain.modality, brats_sequence=domain.brats_sequence)


def _split(subjects: list[Subject], domain: DomainConfig, data: DataConfig) -> SubjectSplit:
    """The domain's train / validation / test parts: the subjects ``data.named_split`` names, or the seeded
    fractions."""
    named = data.named_split
    if named is not None:
        unknown = unknown_named_subjects([*named.validation, *named.test], *(
            subjects if other is domain else domain_subjects(other, data) for other in (data.source, data.target)))
        if unknown:
            raise ConfigError(f"data.named_split: no subject {unknown[0]!r} in either domain")
        try:
            return named_split(subjects, named.validation, named.test)
        except SplitError as error:
            raise ConfigError(f"data.named_split: the {domain.modality} domain's {error}") from None
    try:
        return split_subjects(subjects, data.test_fraction, data.split_seed, data.validation_fraction)
    except SplitError as error:
        raise ConfigError(f"data.validation_fraction: the {domain.modality} domain's {error}; lower it, or "
                          "set it to 0 to train without validation subjects") from None


def build_slice_dataset(prepared: list[PreparedVolume], data: DataConfig, augment: bool, seed: int) -> SliceDataset:
    """A 2.5D ``SliceDataset`` over prepared volumes, with the configuration's size, context and augmentation."""
    return SliceDataset(
        volumes=[p.stack for p in prepared],
        labels=[p.labels for p in prepared],
        size=data.image_size,
        context=data.context,
        skip_empty=data.skip_empty,
        augment=data.augment if augment else None,
        seed=seed,
    )


def _modality_folder(root: Path, modality: str) -> Path:
    """The sub-folder of ``root`` named after ``modality``, compared case-insensitively."""
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    for name in folders:
        if name.lower() == modality.lower():
            return root / name
    raise ValueError(f"{root}: no folder for modality {modality!r} (found {', '.join(folders) or 'none'})")


def phantom_subjects(domain: DomainConfig, data: DataConfig) -> int:
    """How many phantom subjects ``domain`` has: its own count, else the data section's."""
    return data.phantom_subjects if domain.phantom_subjects is None else domain.phantom_subjects


def _phantom_root(data: DataConfig, subjects: int) -> Path:
    """The cached phantom dataset of ``subjects`` per modality, generated on first use (into a hidden
    folder, then renamed). Subject i is the same anatomy whatever the count, so domains of different sizes
    read the same subjects as far as they overlap."""
    from sasan.data.phantom import PHANTOM_VERSION, write_phantom  # only phantom runs need the generator

    cache = cache_folder()
    # The generator's version is part of the name, so a changed phantom never reuses a stale cache; so is a
    # profile other than the default (whose folders keep their names).
    profile = "" if data.phantom_profile == "default" else f"-{data.phantom_profile}"
    final = cache / (f"phantom-v{PHANTOM_VERSION}-{subjects}-{data.phantom_seed}"
                     f"-{data.phantom_size}{profile}")
    if not final.is_dir():
        with staged_folder(final) as staging:  # a concurrent run's identical files are replaced, if it won
            write_phantom(staging, subjects, data.phantom_seed, data.phantom_size, data.phantom_profile)
    return final
