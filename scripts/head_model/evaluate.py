"""Evaluate the head model on the real scans: CT -> MR with segmentation, MR -> CT with bone and brain checks.

    python -m scripts.head_model.evaluate --model Resources/Models/head_ct_mr.safetensors \
        --data data/head --real data/real --figures benchmarks/head_model [--write-card]

CT -> MR: the whole real CT is translated and the translation segmented by the model's MR U-Net; the
segmentation's whole head (labels > 0) and brain are compared with the CT's own masks (``head_labels``) by
Dice and ASSD (mm), on the held-out slab (slices 86..107) and, separately, on the training slices (whose
CT images, not labels, the model saw). "translated" is what a user gets (the card's post-processing
applied), "translated_without_cleanup" the same run with the card's post-processing switched off. The
same U-Net applied to the CT without translation (then the card's post-processing) is the "no adaptation"
baseline.
MR -> CT: Colin27 (a training image, unlabelled side of the translation) and the MNI152 template (never
seen; skull-stripped) are translated to CT; bone (HU >= 226, the CT's own bone threshold) should lie in
the skull region (head minus brain) and enclose the brain, and the brain should keep soft-tissue HU.
Writes ``evaluation.json`` and PNG figures into ``--figures``; ``--write-card`` stores the numbers in
the model card (``evaluation``) by re-saving the model file.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import ndimage

from sasan import bundle
from sasan.baselines import UntranslatedSegmenter, no_adaptation
from sasan.data.io import read_volume
from sasan.inference import translate_volume
from sasan.inference.postprocess import apply_postprocessing
from sasan.metrics import assd, dice
from scripts.head_model import head_labels
from scripts.head_model.fetch_and_prepare import CT_BRAIN_FIRST_SLICE, HELD_OUT_FIRST_SLICE, TRAIN_LAST_SLICE

REPO = Path(__file__).resolve().parents[2]

log = logging.getLogger("head_model.evaluate")

BONE_HU = 226.0                # the InVesalius bone threshold of the real CT
ENCLOSE_MM = 10.0              # brain surface counts as covered when bone lies within this distance


def _mask(path: Path) -> np.ndarray:
    return read_volume(path, dtype=None).array > 0


def structure_scores(pred: np.ndarray, truth: np.ndarray, spacing) -> dict:
    """Dice and ASSD (mm) of two boolean ``(z, y, x)`` masks."""
    return {"dice": round(dice(pred, truth), 4), "assd_mm": round(assd(pred, truth, spacing), 3)}


def evaluate_ct_to_mr(model: bundle.SASANModel, data: Path) -> tuple[dict, dict]:
    ct = read_volume(data / "eval" / "ct.nii.gz")
    truth = {name: _mask(data / "eval" / f"ct_{name}.nii.gz") for name in ("head", "brain")}
    result = translate_volume(ct, model, "MR", source="CT", device="cpu", attention=False)
    segmentation = result.segmentation.array
    uncleaned_model = bundle.SASANModel(dataclasses.replace(model.card, postprocessing={}), model.networks)
    uncleaned = translate_volume(ct, uncleaned_model, "MR", source="CT", device="cpu",
                                 attention=False).segmentation.array
    card = model.card
    unet = UntranslatedSegmenter(model.segmenter("MR"), card.image_size, card.context, card.slicing_axis)
    baseline_labels = no_adaptation(unet, card.normalization_config("CT"))(ct).segmentation.array
    apply_postprocessing(baseline_labels, card.postprocessing)
    methods = {"translated": segmentation, "translated_without_cleanup": uncleaned, "no_adaptation": baseline_labels}
    predicted = {method: {"head": labels > 0, "brain": labels == head_labels.BRAIN_VALUE}
                 for method, labels in methods.items()}
    slabs = {f"held-out slices {HELD_OUT_FIRST_SLICE}-{ct.shape[0] - 1}": slice(HELD_OUT_FIRST_SLICE, None),
             f"training slices {CT_BRAIN_FIRST_SLICE}-{TRAIN_LAST_SLICE}": slice(CT_BRAIN_FIRST_SLICE, TRAIN_LAST_SLICE + 1),
             f"training slices 0-{CT_BRAIN_FIRST_SLICE - 1} (head only)": slice(0, CT_BRAIN_FIRST_SLICE)}
    scores: dict = {"seconds_108_slices": round(result.seconds, 1), "slabs": {}}
    for slab_name, rows in slabs.items():
        structures = ("head",) if "head only" in slab_name else ("head", "brain")
        scores["slabs"][slab_name] = {
            name: {method: structure_scores(masks[name][rows], truth[name][rows], ct.spacing)
                   for method, masks in predicted.items()}
            for name in structures}
    arrays = {"ct": ct.array, "translated": result.translated.array, "segmentation": segmentation,
              "baseline": baseline_labels, **{f"truth_{k}": v for k, v in truth.items()}}
    return scores, arrays


def bone_checks(translated_hu: np.ndarray, head: np.ndarray, brain: np.ndarray, spacing) -> dict:
    """Where bone (HU >= ``BONE_HU``) appears in a translated CT relative to the MR's head and brain masks."""
    bone = translated_hu >= BONE_HU
    shell = head & ~brain
    brain_surface = brain & ~ndimage.binary_erosion(brain)
    distance_to_bone = ndimage.distance_transform_edt(~bone, sampling=tuple(reversed(spacing)))
    soft = (translated_hu >= 0) & (translated_hu <= 80)
    return {
        "bone_in_skull_region": round(float((bone & shell).sum() / max(bone.sum(), 1)), 4),
        "bone_inside_brain": round(float((bone & brain).sum() / max(brain.sum(), 1)), 4),
        "brain_surface_within_10mm_of_bone": round(float((distance_to_bone[brain_surface] <= ENCLOSE_MM).mean()), 4),
        "brain_median_hu": round(float(np.median(translated_hu[brain])), 1),
        "brain_voxels_0_to_80_hu": round(float(soft[brain].mean()), 4),
    }


def derived_structures(translated_hu: np.ndarray, first_slice: int) -> dict[str, np.ndarray]:
    """Head and brain read off a translated CT with the real CT's own recipe (``head_labels``)."""
    head = head_labels.ct_head(translated_hu >= -142.0)
    bone = head_labels.ct_bone(translated_hu >= BONE_HU, head)
    return {"head": head, "brain": head_labels.ct_brain(translated_hu, bone, first_slice) & head}


def evaluate_mr_to_ct(model: bundle.SASANModel, data: Path, real: Path) -> tuple[dict, dict]:
    scores, arrays = {}, {}
    colin = read_volume(data / "MR" / "images" / "colin27.nii.gz")
    head, brain = _mask(data / "eval" / "mr_head.nii.gz"), _mask(data / "eval" / "mr_brain.nii.gz")
    result = translate_volume(colin, model, "CT", source="MR", device="cpu", segment=False, attention=False)
    hu = result.translated.array
    first = int(np.flatnonzero(brain.reshape(len(brain), -1).any(1))[0])
    derived = derived_structures(hu, first)
    scores["colin27 (training image)"] = {
        **bone_checks(hu, head, brain, colin.spacing),
        "head_from_translation": structure_scores(derived["head"], head, colin.spacing),
        "brain_from_translation": structure_scores(derived["brain"], brain, colin.spacing),
        "seconds": round(result.seconds, 1)}
    arrays["colin27"] = {"mr": colin.array, "ct": hu, "head": head, "brain": brain}
    mni_path = real / "mr" / "mni152_t1.nii.gz"
    if mni_path.is_file():
        mni = read_volume(mni_path)
        mni_brain = head_labels.fill_slicewise(head_labels.largest_component(mni.array > 0))
        hu = translate_volume(mni, model, "CT", source="MR", device="cpu", segment=False,
                              attention=False).translated.array
        scores["mni152 (unseen, skull-stripped)"] = {
            "brain_median_hu": round(float(np.median(hu[mni_brain])), 1),
            "brain_voxels_0_to_80_hu": round(float(((hu[mni_brain] >= 0) & (hu[mni_brain] <= 80)).mean()), 4),
            "bone_inside_brain": round(float((hu[mni_brain] >= BONE_HU).mean()), 4)}
        arrays["mni152"] = {"mr": mni.array, "ct": hu, "head": mni_brain, "brain": mni_brain}
    return scores, arrays


def _show(axis, image, window, title, masks=()):
    axis.imshow(image, cmap="gray", vmin=window[0], vmax=window[1], interpolation="bilinear")
    for mask, colour, style in masks:
        if mask.any():
            axis.contour(mask, [0.5], colors=colour, linewidths=0.8, linestyles=style)
    axis.set_title(title, fontsize=8)
    axis.axis("off")


def figure_ct_to_mr(arrays: dict, path: Path) -> None:
    rows = [30, 60, 92, 100]
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.6 * len(rows)))
    for row, z in zip(axes, rows):
        held = "held out" if z >= HELD_OUT_FIRST_SLICE else "training slice"
        _show(row[0], arrays["ct"][z], (-100, 200), f"real CT, slice {z} ({held})")
        mr = arrays["translated"][z]
        _show(row[1], mr, np.percentile(arrays["translated"], [1, 99.5]), "translated to T1 MR")
        seg = arrays["segmentation"][z]
        _show(row[2], mr, np.percentile(arrays["translated"], [1, 99.5]),
              "MR U-Net on translation (solid)\nvs CT masks (dashed)",
              [(seg > 0, "lime", "solid"), (seg == 2, "red", "solid"),
               (arrays["truth_head"][z], "yellow", "dashed"), (arrays["truth_brain"][z], "cyan", "dashed")])
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def figure_mr_to_ct(arrays: dict, path: Path) -> None:
    panels = [("colin27", 0.45), ("colin27", 0.62), ("colin27", 0.78)] + ([("mni152", 0.6)] if "mni152" in arrays else [])
    fig, axes = plt.subplots(len(panels), 3, figsize=(7.5, 2.6 * len(panels)))
    for row, (name, height) in zip(axes, panels):
        a = arrays[name]
        z = int(height * a["mr"].shape[0])
        _show(row[0], a["mr"][z], np.percentile(a["mr"], [0.5, 99.5]), f"real T1 ({name}), slice {z}")
        _show(row[1], a["ct"][z], (-100, 200), "translated to CT (brain window)")
        _show(row[2], a["ct"][z], (-200, 600), f"bone (HU >= {BONE_HU:.0f}, red)\nvs MR brain / head (dashed)",
              [(a["ct"][z] >= BONE_HU, "red", "solid"), (a["brain"][z], "cyan", "dashed"),
               (a["head"][z], "yellow", "dashed")])
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def markdown_tables(evaluation: dict) -> str:
    """The numbers as the Markdown tables of benchmarks/RESULTS.md."""
    ct = evaluation["CT->MR segmentation vs CT masks"]
    lines = ["| CT slices | structure | Dice / ASSD mm (translated) | Dice / ASSD mm (translated, no clean-up) "
             "| Dice / ASSD mm (no adaptation) |", "|---|---|---|---|---|"]
    for slab, structures in ct["slabs"].items():
        for name, scores in structures.items():
            cells = [f"{scores[m]['dice']:.3f} / {scores[m]['assd_mm']:.2f}"
                     for m in ("translated", "translated_without_cleanup", "no_adaptation")]
            lines.append(f"| {slab} | {name} | " + " | ".join(cells) + " |")
    lines += ["", "| T1 input | bone in skull region | bone inside brain | brain surface <= 10 mm from bone "
              "| brain median HU | brain voxels 0-80 HU | head Dice / ASSD | brain Dice / ASSD |",
              "|---|---|---|---|---|---|---|---|"]
    for name, s in evaluation["MR->CT checks"].items():
        def pair(key: str) -> str:
            return f"{s[key]['dice']:.3f} / {s[key]['assd_mm']:.1f}" if key in s else "n/a"
        lines.append(f"| {name} | {s.get('bone_in_skull_region', 'n/a')} | {s['bone_inside_brain']} | "
                     f"{s.get('brain_surface_within_10mm_of_bone', 'n/a')} | {s['brain_median_hu']} | "
                     f"{s['brain_voxels_0_to_80_hu']} | {pair('head_from_translation')} | {pair('brain_from_translation')} |")
    return "\n".join(lines)


def write_card_evaluation(model_path: Path, evaluation: dict) -> None:
    """Re-save the model file with ``evaluation`` in its card (fp16 tensors kept)."""
    model = bundle.load(model_path)
    card = dataclasses.replace(model.card, evaluation=evaluation)
    bundle.save(model_path, card, model.networks, half=True, overwrite=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "Resources" / "Models" / "head_ct_mr.safetensors")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "head", help="prepared data (fetch_and_prepare.py)")
    parser.add_argument("--real", type=Path, default=REPO / "data" / "real", help="fetched real scans")
    parser.add_argument("--figures", type=Path, default=REPO / "benchmarks" / "head_model")
    parser.add_argument("--write-card", action="store_true", help="store the numbers in the model card")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    torch.set_num_threads(1)
    model = bundle.load(args.model)
    ct_scores, ct_arrays = evaluate_ct_to_mr(model, args.data)
    mr_scores, mr_arrays = evaluate_mr_to_ct(model, args.data, args.real)
    evaluation = {"CT->MR segmentation vs CT masks": ct_scores, "MR->CT checks": mr_scores}
    args.figures.mkdir(parents=True, exist_ok=True)
    (args.figures / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    figure_ct_to_mr(ct_arrays, args.figures / "ct_to_mr.png")
    figure_mr_to_ct(mr_arrays, args.figures / "mr_to_ct.png")
    if args.write_card:
        write_card_evaluation(args.model, evaluation)
    print(markdown_tables(evaluation))
    return 0


if __name__ == "__main__":
    sys.exit(main())
