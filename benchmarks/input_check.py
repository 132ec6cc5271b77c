"""The input check of the shipped models on real scans: how far each lies from a model's training scans.

    .venv/bin/python -m benchmarks.input_check [--real ~/.cache/sasan/real] [--prepared data/head]

``--real``: the scans of ``shared/data/fetch_real_data.sh`` and ``fetch_more_real_data.sh`` (one folder);
``--prepared``: ``scripts/head_model/fetch_and_prepare.py``'s output, for the head CT's held-out top slab (left
out when absent). Prints a Markdown table: each scan given to a model as a modality, its ratio (times the
farthest validation scan), the verdict, and the check's seconds beside a translation's (same run, one thread).
This is a script, not a test (the must-warn / must-not-warn cases are Testing/test_domain_real_scans.py).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from sasan import bundle
from sasan.data.io import read_volume
from sasan.data.phantom import make_subject
from sasan.data.volume import Volume
from sasan.domain.check import check_domain
from sasan.inference import translate_volume

MODELS = Path(__file__).resolve().parents[1] / "Resources" / "Models"
CASES = [  # (model, scan, given as)
    ("head_ct_mr", "ct/invesalius_cranium.nii.gz", "CT"), ("head_ct_mr", "held-out top slab", "CT"),
    ("head_ct_mr", "mr/colin27_t1.nii.gz", "MR"), ("head_ct_mr", "mr/itk_t1.nii.gz", "MR"),
    ("head_ct_mr", "mr/unc_mrbrain.nii.gz", "MR"), ("head_ct_mr", "mr/mni152_t1.nii.gz", "MR"),
    ("head_ct_mr", "chest/cta.nii.gz", "CT"), ("head_ct_mr", "abdomen/ct.nii.gz", "CT"),
    ("head_ct_mr", "phantom CT", "CT"), ("head_ct_mr", "mr/colin27_t1.nii.gz", "CT"),
    ("head_ct_mr", "mr/itk_t1.nii.gz", "CT"), ("head_ct_mr", "abdomen/mr_small.nii.gz", "CT"),
    ("head_ct_mr", "ct/invesalius_cranium.nii.gz", "MR"), ("head_ct_mr", "abdomen/mr_small.nii.gz", "MR"),
    ("phantom_ct_mr", "phantom CT", "CT"), ("phantom_ct_mr", "ct/invesalius_cranium.nii.gz", "CT"),
    ("phantom_ct_mr", "chest/cta.nii.gz", "CT"), ("phantom_ct_mr", "abdomen/ct.nii.gz", "CT"),
    ("phantom_ct_mr", "mr/colin27_t1.nii.gz", "MR"), ("phantom_ct_mr", "abdomen/mr_small.nii.gz", "MR"),
]
TIMED = ["ct/invesalius_cranium.nii.gz", "chest/cta.nii.gz", "mr/colin27_t1.nii.gz"]


def scan(real: Path, prepared: Path, name: str) -> Volume:
    if name == "phantom CT":
        return make_subject(101, "CT")[0]  # a phantom subject no model file was trained on
    if name == "held-out top slab":
        return read_volume(prepared / "CT" / "images" / "cranium_heldout.nii.gz")
    volume = read_volume(real / name)
    if name == "mr/unc_mrbrain.nii.gz":  # sagittal slices in a file that calls them axial
        return Volume(volume.array, volume.spacing, volume.origin, np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0.0]]))
    return volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=Path("~/.cache/sasan/real").expanduser())
    parser.add_argument("--prepared", type=Path, default=Path("data/head"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = {name: bundle.load(MODELS / f"{name}.safetensors") for name in ("head_ct_mr", "phantom_ct_mr")}
    print("| model | scan | given as | ratio | warning |\n|---|---|---|---|---|")
    for model, name, modality in CASES:
        if name == "held-out top slab" and not (args.prepared / "CT").is_dir():
            continue
        check = check_domain(scan(args.real, args.prepared, name), models[model].card, modality)
        print(f"| {model} | {name} | {modality} | {check.ratio:.2f} | {check.warning or '-'} |")
    print("\n| scan (head model) | check s | translation s (check included) | share |\n|---|---|---|---|")
    for name in TIMED:
        volume, source = scan(args.real, args.prepared, name), "MR" if name.startswith("mr/") else "CT"
        started = time.perf_counter()
        check_domain(volume, models["head_ct_mr"].card, source)
        checked = time.perf_counter() - started
        started = time.perf_counter()
        translate_volume(volume, models["head_ct_mr"], "CT" if source == "MR" else "MR", source=source, device="cpu",
                         threads=1, attention=False, segment=source == "CT")
        whole = time.perf_counter() - started
        print(f"| {name} | {checked:.2f} | {whole:.1f} | {100 * checked / whole:.1f} % |")


if __name__ == "__main__":
    main()
