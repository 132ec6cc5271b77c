"""Fetch the real head scans and lay them out as the head model's training data ("folder" layouts).

    python -m scripts.head_model.fetch_and_prepare --real data/real --out data/head

Writes ``OUT/CT/{images,labels}/cranium_train.nii.gz`` (axial slices 0..84 of the InVesalius CT),
``OUT/CT/{images,labels}/cranium_heldout.nii.gz`` (slices 86..107, the top 22 slices: held out; slice 85
is dropped so no training slice's 2.5D context touches them), ``OUT/MR/{images,labels}/colin27.nii.gz``
(Colin27 T1 padded in-plane to the CT's field of view) and ``OUT/eval/`` (the whole CT with its head,
bone and brain masks, and the MR's head and brain masks, for ``evaluate.py``). Labels: ``head_labels``.
The real scans are fetched with ``shared/data/fetch_real_data.sh`` when ``--real`` lacks them.
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np

from sasan.data.crop import CropRegion, crop_volume
from sasan.data.io import read_volume, write_volume
from sasan.data.volume import Volume
from scripts.head_model import head_labels

log = logging.getLogger("head_model.prepare")

REPO = Path(__file__).resolve().parents[2]
FETCH_SCRIPT = REPO.parent / "shared" / "data" / "fetch_real_data.sh"
HELD_OUT_FIRST_SLICE = 86          # slices 86..107 (top 20 %) are held out of training
TRAIN_LAST_SLICE = 84              # slices 0..84 train; 85 is a gap
CT_BRAIN_FIRST_SLICE = 44         # the orbital roofs: below, the CT carries no brain label
SPLIT_SEED = 2                     # the trainer's subject split that sends cranium_heldout to its test set
CT_FILES = {"ct": "ct/invesalius_cranium.nii.gz", "head": "ct/invesalius_cranium_head.nii.gz",
            "bone": "ct/invesalius_cranium_bone.nii.gz"}
MR_FILES = {"t1": "mr/colin27_t1.nii.gz", "brain": "mr/colin27_t1_brain.nii.gz"}


def fetch_real_data(real: Path) -> None:
    """Run the shared fetch script into ``real`` unless every file this recipe needs is there."""
    needed = [real / p for p in (*CT_FILES.values(), *MR_FILES.values())]
    if all(p.is_file() for p in needed):
        return
    if not FETCH_SCRIPT.is_file():
        raise FileNotFoundError(f"the fetch script {FETCH_SCRIPT} is missing; fetch the real scans by hand into {real}")
    log.info("fetching the real scans into %s", real)
    subprocess.run(["bash", str(FETCH_SCRIPT), str(real)], check=True)


def _read(path: Path) -> Volume:
    return read_volume(path, dtype=None)  # as stored


def _write(volume: Volume, path: Path) -> None:
    write_volume(volume, path, overwrite=True)


def _pad_in_plane(volume: Volume, field_of_view_mm: float) -> Volume:
    """Pad x and y symmetrically (with the image minimum) to ``field_of_view_mm``, keeping world positions."""
    nz, ny, nx = volume.shape
    lower, upper = [0, 0, 0], [0, 0, 0]  # voxels added before and after, along i (x), j (y), k (z)
    for axis, size in ((0, nx), (1, ny)):
        missing = max(0, int(round(field_of_view_mm / volume.spacing[axis])) - size)
        lower[axis], upper[axis] = missing // 2, missing - missing // 2
    array = np.pad(volume.array, ((0, 0), (lower[1], upper[1]), (lower[0], upper[0])),
                   constant_values=volume.array.min())
    origin = np.asarray(volume.origin) - volume.direction @ (np.asarray(volume.spacing) * lower)
    return Volume(array, volume.spacing, tuple(origin), volume.direction.copy())


def prepare_ct(real: Path, out: Path) -> None:
    ct = _read(real / CT_FILES["ct"])
    hu = ct.array.astype(np.float32)
    head = head_labels.ct_head(_read(real / CT_FILES["head"]).array)
    bone = head_labels.ct_bone(_read(real / CT_FILES["bone"]).array, head)
    brain = head_labels.ct_brain(hu, bone, CT_BRAIN_FIRST_SLICE) & head
    labels = ct.with_array(head_labels.label_map(head, brain))
    for name, mask in (("head", head), ("bone", bone), ("brain", brain)):
        _write(ct.with_array(mask.astype(np.uint8)), out / "eval" / f"ct_{name}.nii.gz")
    _write(ct, out / "eval" / "ct.nii.gz")
    last = ct.shape[0] - 1
    # A slab of slices keeps the world position of every voxel (its origin moves to its first slice).
    for name, first, stop in (("cranium_train", 0, TRAIN_LAST_SLICE + 1),
                              ("cranium_heldout", HELD_OUT_FIRST_SLICE, last + 1)):
        slab = CropRegion((first, 0, 0), (stop, *ct.shape[1:]), ct.shape)
        _write(crop_volume(ct, slab), out / "CT" / "images" / f"{name}.nii.gz")
        _write(crop_volume(labels, slab), out / "CT" / "labels" / f"{name}.nii.gz")
    log.info("CT: head %d, bone %d, brain %d voxels; train slices 0..%d, held out %d..%d", head.sum(), bone.sum(),
             brain.sum(), TRAIN_LAST_SLICE, HELD_OUT_FIRST_SLICE, last)


def prepare_mr(real: Path, out: Path, field_of_view_mm: float) -> None:
    t1 = _pad_in_plane(_read(real / MR_FILES["t1"]), field_of_view_mm)
    bet = _pad_in_plane(_read(real / MR_FILES["brain"]), field_of_view_mm)
    t1 = t1.with_array(t1.array.astype(np.float32))
    head = head_labels.mr_head(t1.array)
    brain = head_labels.mr_brain(bet.array, head)
    _write(t1, out / "MR" / "images" / "colin27.nii.gz")
    _write(t1.with_array(head_labels.label_map(head, brain)), out / "MR" / "labels" / "colin27.nii.gz")
    for name, mask in (("head", head), ("brain", brain)):
        _write(t1.with_array(mask.astype(np.uint8)), out / "eval" / f"mr_{name}.nii.gz")
    log.info("MR: %s voxels, head %d, brain %d", t1.shape[::-1], head.sum(), brain.sum())


def check_split(out: Path) -> None:
    """The trainer's subject split must hold out exactly the held-out slab (config data.split_seed)."""
    from sasan.data.layouts import find_subjects, split_subjects

    split = split_subjects(find_subjects("folder", out / "CT", "CT"), 0.2, SPLIT_SEED)
    train, test = split.train, split.test
    if [s.id for s in test] != ["cranium_heldout"] or [s.id for s in train] != ["cranium_train"]:
        raise RuntimeError(f"split seed {SPLIT_SEED} does not hold out cranium_heldout: test {[s.id for s in test]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=REPO / "data" / "real", help="fetched real scans")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "head", help="prepared training data")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    fetch_real_data(args.real)
    ct = _read(args.real / CT_FILES["ct"])
    field_of_view = max(ct.shape[2] * ct.spacing[0], ct.shape[1] * ct.spacing[1])
    prepare_ct(args.real, args.out)
    prepare_mr(args.real, args.out, field_of_view)
    check_split(args.out)
    log.info("prepared %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
