"""Finding the subjects (image, label, partner image) of a dataset stored in a known folder layout.

Layouts:

- ``folder``: ``root/images/<id>.<ext>`` with optional ``root/labels/<id>.<ext>``.
- ``mmwhs``: ``root/ct_train/ct_train_1001_image.nii.gz`` and ``..._label.nii.gz`` (``mr_train`` for MR).
- ``brats``: ``root/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz``; the sequence is the image, seg the label.
- ``rire``: ``root/patient_XXX/{ct,mr_T1,mr_T2,mr_PD}/<one image>``; the partner modality of the same
  patient (MR_T1 for CT, CT for any MR) goes in ``Subject.paired_with``.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sasan.config import LabelSpec
from sasan.data.io import volume_suffix

log = logging.getLogger(__name__)

LAYOUTS = ("folder", "mmwhs", "brats", "rire")
FOLDER_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
RIRE_SUFFIXES = (".mhd", ".mha", ".nii.gz")
BRATS_SEQUENCES = ("t1", "t1ce", "t2", "flair")

MMWHS_LABELS: list[LabelSpec] = [
    LabelSpec("myocardium", 205, [0.90, 0.60, 0.20]),
    LabelSpec("left atrium blood cavity", 420, [0.20, 0.70, 0.30]),
    LabelSpec("left ventricle blood cavity", 500, [0.85, 0.20, 0.20]),
    LabelSpec("ascending aorta", 820, [0.25, 0.45, 0.90]),
]
BRATS_LABELS: list[LabelSpec] = [
    LabelSpec("necrosis", 1, [0.85, 0.20, 0.20]),
    LabelSpec("edema", 2, [0.20, 0.75, 0.30]),
    LabelSpec("non-enhancing tumour", 3, [0.95, 0.85, 0.20]),
    LabelSpec("enhancing tumour", 4, [0.25, 0.45, 0.90]),
]


class LayoutError(ValueError):
    """A dataset folder does not match the layout it was declared to have."""


class SplitError(ValueError):
    """A domain has too few subjects for the validation part it is asked for."""


@dataclass
class Subject:
    """One volume of a dataset: its image, its label file if any, and a co-registered partner image."""

    id: str
    image: Path
    label: Optional[Path]
    modality: str
    paired_with: Optional[Path] = None


def find_subjects(
    layout: str,
    root: Path,
    modality: str,
    *,
    brats_sequence: str = "t2",
    pair_with: Optional[str] = None,
) -> list[Subject]:
    """All subjects of ``modality`` under ``root``, sorted by id.

    ``pair_with`` requests a partner modality (rire: "CT", "MR_T1", ...; brats: a sequence name);
    subjects without that partner are dropped, and a layout or folder with no pairs is refused.
    Without it, rire still fills ``paired_with`` with its default partner where present.
    """
    root = Path(root)
    if layout not in LAYOUTS:
        raise LayoutError(f"unknown dataset layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if not root.is_dir():
        raise LayoutError(f"{root}: the dataset folder does not exist")
    if pair_with is not None and layout in ("folder", "mmwhs"):
        raise LayoutError(f"{root}: a {layout!r} dataset holds no paired images (pair_with={pair_with!r})")
    if layout == "folder":
        subjects = _folder_subjects(root, modality)
    elif layout == "mmwhs":
        subjects = _mmwhs_subjects(root, modality)
    elif layout == "brats":
        subjects = _brats_subjects(root, modality, brats_sequence, pair_with)
    else:
        subjects = _rire_subjects(root, modality, pair_with)
    if pair_with is not None:
        unpaired = [s.id for s in subjects if s.paired_with is None]
        if unpaired:
            log.warning("%s: dropping %d subject(s) without a %s image: %s", root, len(unpaired), pair_with,
                        ", ".join(unpaired))
        subjects = [s for s in subjects if s.paired_with is not None]
        if not subjects:
            raise LayoutError(f"{root}: no {modality} subject has a paired {pair_with} image")
    return sorted(subjects, key=lambda s: s.id)


@dataclass
class SubjectSplit:
    """The three disjoint parts of a domain's subjects, each sorted by id: ``train`` (learning),
    ``validation`` (every choice: periodic validation, model selection, tuning) and ``test`` (scored
    once, at the end)."""

    train: list[Subject]
    validation: list[Subject]
    test: list[Subject]


def split_subjects(subjects: list[Subject], test_fraction: float, seed: int,
                   validation_fraction: float = 0.0) -> SubjectSplit:
    """Subject-level train / validation / test split, the same for the same ids and seed whatever the list order.

    Subjects are ranked by a seeded hash of their id: the first ``round(n * test_fraction)`` go to test
    (at least one, and at least one left for training, when there are two or more), the next
    ``round(n * validation_fraction)`` to validation (at least one when the fraction is above 0), the rest
    to training. Domains with the same subject ids (paired data) get the same split, and a validation part
    never moves a test subject: the test set is the one a two-way split of the same seed gives. One
    subject goes to training alone (with a warning); a validation part that would leave no training
    subject is refused.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"the test fraction must be between 0 and 1; got {test_fraction}")
    if not 0.0 <= validation_fraction < 1.0 or test_fraction + validation_fraction >= 1.0:
        raise ValueError(f"the validation fraction must be in [0, 1) and leave training subjects beside the test "
                         f"fraction {test_fraction}; got {validation_fraction}")
    ids = [s.id for s in subjects]
    if len(set(ids)) != len(ids):
        raise ValueError(f"subject ids must be unique; duplicates: {sorted({i for i in ids if ids.count(i) > 1})}")
    if len(subjects) < 2:
        log.warning("only %d subject(s): all go to training, none to validation or test", len(subjects))
        return SubjectSplit(list(subjects), [], [])
    ranked = sorted(subjects, key=lambda s: hashlib.sha256(f"{seed}:{s.id}".encode()).hexdigest())
    tests = min(max(round(len(subjects) * test_fraction), 1), len(subjects) - 1)
    validations = max(round(len(subjects) * validation_fraction), 1) if validation_fraction > 0 else 0
    if len(subjects) - tests - validations < 1:
        raise SplitError(f"{len(subjects)} subjects cannot be split three ways ({tests} test, {validations} "
                         "validation, none left to train)")
    test_ids = {s.id for s in ranked[:tests]}
    validation_ids = {s.id for s in ranked[tests:tests + validations]}

    def part(selected) -> list[Subject]:
        return sorted((s for s in subjects if selected(s.id)), key=lambda s: s.id)

    return SubjectSplit(part(lambda i: i not in test_ids and i not in validation_ids),
                        part(validation_ids.__contains__), part(test_ids.__contains__))


def named_split(subjects: list[Subject], validation: list[str], test: list[str]) -> SubjectSplit:
    """The split a configuration names (``data.named_split``): the listed ids go to validation and test, every
    other subject to training. Ids absent from ``subjects`` are skipped (the other domain may hold them:
    ``unknown_named_subjects`` checks both); a split that leaves no training subject is refused."""
    def part(ids) -> list[Subject]:
        return sorted((s for s in subjects if s.id in ids), key=lambda s: s.id)

    named = set(validation) | set(test)
    train = part({s.id for s in subjects} - named)
    if subjects and not train:
        raise SplitError(f"{len(subjects)} subjects, all named for validation or test: none left to train")
    return SubjectSplit(train, part(set(validation)), part(set(test)))


def unknown_named_subjects(named: list[str], *domains: list[Subject]) -> list[str]:
    """The ids of ``named`` that no domain holds (a typo would otherwise silently train on a test scan)."""
    known = {s.id for subjects in domains for s in subjects}
    return sorted(set(named) - known)


def _folder_subjects(root: Path, modality: str) -> list[Subject]:
    images = _files_by_id(root / "images", FOLDER_SUFFIXES)
    if not images:
        raise LayoutError(f"{root / 'images'}: no image found (expected {', '.join(FOLDER_SUFFIXES)} files)")
    labels = _files_by_id(root / "labels", FOLDER_SUFFIXES)
    orphans = sorted(set(labels) - set(images))
    if orphans:
        raise LayoutError(
            f"{root / 'labels'}: label file(s) without an image in {root / 'images'}: {', '.join(orphans)}"
        )
    return [Subject(subject_id, path, labels.get(subject_id), modality) for subject_id, path in images.items()]


def _mmwhs_subjects(root: Path, modality: str) -> list[Subject]:
    prefix = {"ct": "ct_train", "mr": "mr_train"}.get(modality.lower())
    if prefix is None:
        raise LayoutError(f"the mmwhs layout has modalities CT and MR; got {modality!r}")
    folder = root / prefix
    images = sorted(folder.glob(f"{prefix}_*_image.nii.gz")) if folder.is_dir() else []
    if not images:
        raise LayoutError(f"{folder}: no image found (expected {prefix}_<number>_image.nii.gz)")
    subjects = []
    for image in images:
        subject_id = image.name[: -len("_image.nii.gz")]
        label = folder / f"{subject_id}_label.nii.gz"
        subjects.append(Subject(subject_id, image, label if label.is_file() else None, modality))
    return subjects


def _brats_subjects(root: Path, modality: str, sequence: str, pair_with: Optional[str]) -> list[Subject]:
    for name in (sequence, pair_with):
        if name is not None and name.lower() not in BRATS_SEQUENCES:
            raise LayoutError(f"unknown BraTS sequence {name!r}; expected one of {', '.join(BRATS_SEQUENCES)}")
    cases = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    subjects = []
    for case in cases:
        image = case / f"{case.name}_{sequence.lower()}.nii.gz"
        if not image.is_file():
            raise LayoutError(f"{case}: missing the {sequence} image {image.name}")
        label = case / f"{case.name}_seg.nii.gz"
        partner = case / f"{case.name}_{pair_with.lower()}.nii.gz" if pair_with else None
        subjects.append(Subject(case.name, image, label if label.is_file() else None, modality,
                                partner if partner is not None and partner.is_file() else None))
    if not subjects:
        raise LayoutError(f"{root}: no image found (expected <case>/<case>_{sequence}.nii.gz folders)")
    return subjects


def _rire_subjects(root: Path, modality: str, pair_with: Optional[str]) -> list[Subject]:
    partner_modality = pair_with or ("MR_T1" if modality.lower() == "ct" else "CT")
    patients = sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower().startswith("patient"))
    subjects = []
    for patient in patients:
        image = _rire_image(patient, modality)
        if image is not None:
            subjects.append(Subject(patient.name, image, None, modality, _rire_image(patient, partner_modality)))
    if not subjects:
        raise LayoutError(f"{root}: no image found (expected patient_XXX/{modality.lower()}/<image>)")
    return subjects


def _rire_image(patient: Path, modality: str) -> Optional[Path]:
    """The one image in the patient's folder for ``modality`` (folder names compared case-insensitively)."""
    folders = [p for p in patient.iterdir() if p.is_dir() and p.name.lower() == modality.lower()]
    if not folders:
        return None
    files = sorted(p for p in folders[0].iterdir()
                   if p.is_file() and not p.name.startswith(".") and volume_suffix(p, RIRE_SUFFIXES))
    if len(files) > 1:
        raise LayoutError(f"{folders[0]}: expected one image, found {', '.join(p.name for p in files)}")
    return files[0] if files else None


def _files_by_id(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Volume files of ``folder`` keyed by name without extension (hidden files skipped)."""
    if not folder.is_dir():
        return {}
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        suffix = volume_suffix(path, suffixes)
        if path.name.startswith(".") or not path.is_file() or suffix is None:
            continue
        subject_id = path.name[: -len(suffix)]
        if subject_id in files:
            raise LayoutError(f"{folder}: two files for {subject_id!r}: {files[subject_id].name} and {path.name}")
        files[subject_id] = path
    return files
