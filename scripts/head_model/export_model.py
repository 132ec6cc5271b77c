"""Export the head model's run folder as the shipped model file, with its card's description and provenance.

    python -m scripts.head_model.export_model runs/head_ct_mr Resources/Models/head_ct_mr.safetensors

The card gets the fingerprint of the training scans from the run's data folders (``data/head``) for the input
check, scaled by held-out quarters of the training CT slab and of Colin27 (the recipe has no validation
subjects). The card asks inference to keep only the largest connected head component of every segmentation
(``POSTPROCESSING``): it drops the CT head holder's arcs that the T1 U-Net labels "head". The evaluation
numbers are added afterwards by ``evaluate.py --write-card``.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from sasan import bundle
from sasan.training.export import export_run
from scripts.head_model.fetch_and_prepare import CT_BRAIN_FIRST_SLICE, HELD_OUT_FIRST_SLICE, TRAIN_LAST_SLICE

REPO = Path(__file__).resolve().parents[2]

MAX_MEGABYTES = 25
POSTPROCESSING = {"largest_foreground_component": True}

DESCRIPTION = (
    "Head CT <-> T1 MRI translation (SASAN, unpaired, 2.5D axial, 96x96) trained on one real head CT and "
    "one real T1 head (Colin27), with a T1 U-Net that segments head and brain on real or translated T1. "
    "Coarse anatomy only: it places head, skull and brain where they are; it does not reproduce fine "
    "tissue contrast, and it was trained on two people. Its segmentations keep only the largest connected "
    "head component. Research; not for diagnosis.")

PROVENANCE = {
    "source": "trained by the SASAN trainer with Resources/configs/head_ct_mr.yaml (scripts/head_model/train.sh)",
    "data": "real scans: one head CT (InVesalius 'Cranium', GPL-2) and the Colin27 T1 head (mricron-data, BSD-3)",
    "data sources": [
        "CT: InVesalius example 'Cranium' head CT, one patient, 256x256x108, 0.957x0.957x1.5 mm "
        "(Debian package invesalius-examples, GPL-2); orientation stored as identity (left/right unconfirmed)",
        "MR: Colin27 T1 (ch2) and its brain extraction (ch2bet), 1 mm (Debian package mricron-data, BSD-3; "
        "the templates keep their upstream terms), padded in-plane to the CT's 245 mm field of view",
    ],
    "evaluation-only data": [
        "MNI152 2009a T1 template (nilearn wheel; MNI template notice), skull-stripped",
        "TotalSegmentator CT brain atlas (Apache-2.0) is fetched by the recipe's script but not used",
    ],
    "licences": {"invesalius-examples": "GPL-2", "mricron-data": "BSD-3 (atlases keep upstream terms)",
                 "nilearn MNI templates": "MNI ICBM152 notice (free use with acknowledgement)",
                 "TotalSegmentator": "Apache-2.0"},
    "labels": {
        "head (1)": "head outside the brain; the whole head is labels 1 + 2. CT: InVesalius head threshold mask "
                    "(HU >= -142), largest 3D component, holes filled per slice. MR: Otsu threshold of T1, largest "
                    "component, closed, holes filled per slice.",
        "brain (2)": f"intracranial soft tissue. CT (evaluation only): from slice {CT_BRAIN_FIRST_SLICE} up, convex "
                     "hull of the bone threshold mask (HU >= 226) minus bone, HU in [-20, 100], largest component, "
                     "filled per slice. MR: ch2bet > 0, closed, filled per slice.",
        "training labels": "MR only (setup 'unpaired'); the CT's labels are never used for training",
    },
    "held-out": f"CT axial slices {HELD_OUT_FIRST_SLICE}-107 (top 20 %) are held out of training; slice "
                f"{TRAIN_LAST_SLICE + 1} is a gap; slices 0-{TRAIN_LAST_SLICE} train (images only). No T1 head "
                "scan with a skull is held out: Colin27 is the only one.",
    "checkpoint rule": "the last step's EMA translator weights and the last U-Net (no checkpoint picked by score). "
                       "A run whose U-Net trained 800 instead of 300 steps was also evaluated and scored worse on "
                       "the held-out slab (head Dice 0.842, brain 0.380); the 300-step U-Net is shipped, so the "
                       "held-out slab informed one choice and its numbers are slightly optimistic.",
}


def set_postprocessing(path: Path, postprocessing: dict) -> None:
    """Re-save the fp16 model file at ``path`` with ``postprocessing`` in its card (fp16 -> fp32 -> fp16 is exact)."""
    model = bundle.load(path)
    card = dataclasses.replace(model.card, postprocessing=postprocessing)
    bundle.save(path, card, model.networks, half=True, overwrite=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    path = export_run(args.run_dir, args.output, half=True, overwrite=True, description=DESCRIPTION,
                      provenance=PROVENANCE)
    set_postprocessing(path, POSTPROCESSING)
    megabytes = path.stat().st_size / 2 ** 20
    if megabytes > MAX_MEGABYTES:
        raise SystemExit(f"{path} is {megabytes:.1f} MB; the shipped model must be <= {MAX_MEGABYTES} MB")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
