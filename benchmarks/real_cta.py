"""A cardiac CT -> MR model on a real CT angiogram: where do its segments fall?

    .venv/bin/python -m benchmarks.real_cta --model Resources/Models/cardiac_ct_mr.safetensors [--output runs/real_cta]

The real contrast chest CTA (``benchmarks/real_cta_data.py``: fetched once into ``$SASAN_CACHE/real``) is
translated to MR and segmented by the model's MR U-Net, as ``sasan translate CTA --to MR --segmentation``
does. No voxel-wise labels of the four phantom structures exist for this scan, only masks of the whole
heart (TotalSegmentator's, which takes in the pulmonary trunk), of the aorta and of the pulmonary artery, so
the scores say where the segments fall, per label: the share of its voxels inside the heart mask, inside
the aorta mask and inside the pulmonary-artery mask; the share of the heart mask the left-heart labels cover;
and the two bars of issue #24: >= 95 % of the LV myocardium, LA blood and LV blood voxels (pooled) inside the
heart mask, >= 70 % of the ascending-aorta voxels inside the aorta mask.

Writes ``real_cta.json`` and ``real_cta.png`` (CTA, translation, segments over the mask outlines; three
axial levels and a coronal cut) into ``--output`` and prints one ``RESULT`` JSON line. A script, not a test.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import time
from pathlib import Path
from typing import Optional

import numpy as np

from benchmarks.real_cta_data import RealCTA, load_real_cta, real_data_cache
from sasan.card import read_card
from sasan.inference import translate_volume
from sasan.runtime import cpu_model_name

log = logging.getLogger("benchmarks.real_cta")

LEFT_HEART = ("LV myocardium", "LA blood", "LV blood")
AORTA = "ascending aorta"
LEFT_HEART_BAR, AORTA_BAR = 0.95, 0.70
CTA_WINDOW = (-200.0, 600.0)  # HU shown in the figure


def label_shares(segmentation: np.ndarray, labels: list[dict], reference: RealCTA) -> dict:
    """Where each label's voxels fall. ``segmentation``: class indices on the CTA's grid, class ``i`` is
    ``labels[i - 1]`` (the model card's labels). The left-heart and aorta figures need those label names."""
    names = [label["name"] for label in labels]
    missing = [name for name in (*LEFT_HEART, AORTA) if name not in names]
    if missing:
        raise ValueError(f"the model's labels {names} lack {missing}: not a cardiac CT -> MR model of this project")
    masks = {"heart": reference.heart, "aorta": reference.aorta, "pulmonary_artery": reference.pulmonary_artery}
    per_label = {}
    for index, name in enumerate(names, start=1):
        voxels = segmentation == index
        count = int(voxels.sum())
        per_label[name] = {"voxels": count, **{f"inside_{mask_name}": _share(voxels & mask, count)
                                               for mask_name, mask in masks.items()}}
    left = np.isin(segmentation, [names.index(name) + 1 for name in LEFT_HEART])
    left_count = int(left.sum())
    heart_count = int(reference.heart.sum())
    return {
        "labels": per_label,
        "left_heart_inside_heart": _share(left & reference.heart, left_count),
        "heart_covered_by_left_heart_labels": _share(left & reference.heart, heart_count),
        "heart_covered_by_any_label": _share((segmentation > 0) & reference.heart, heart_count),
        "aorta_inside_aorta": per_label[AORTA]["inside_aorta"],
        "bars": {"left_heart_inside_heart >= 0.95": _share(left & reference.heart, left_count) >= LEFT_HEART_BAR,
                 "aorta_inside_aorta >= 0.70": per_label[AORTA]["inside_aorta"] >= AORTA_BAR},
    }


def _share(part: np.ndarray, whole: int) -> float:
    """``part.sum() / whole``, 0 for an empty whole (a label never predicted lies nowhere)."""
    return round(float(part.sum()) / whole, 4) if whole else 0.0


def save_figure(path: Path, reference: RealCTA, translated: np.ndarray, segmentation: np.ndarray,
                labels: list[dict], title: str) -> None:
    """Three axial levels of the heart mask (a quarter, half and three quarters up) and a coronal cut through
    its centre: CTA, translation, and the segments over the CTA with the heart (white) and aorta (cyan) outlines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no GUI backend is touched
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    cta = reference.cta.array
    z_levels = np.flatnonzero(reference.heart.any(axis=(1, 2)))
    y_centre = int(np.flatnonzero(reference.heart.any(axis=(0, 2))).mean())
    cuts = [(f"axial {z}", np.s_[z, :, :], False) for z in
            (int(np.percentile(z_levels, q)) for q in (25, 50, 75))]
    cuts.append((f"coronal {y_centre}", np.s_[:, y_centre, :], True))
    colours = ListedColormap([label["color"] for label in labels])
    spacing = reference.cta.spacing
    figure = Figure(figsize=(10.5, 3.2 * len(cuts)), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title, fontsize=10)
    for row, (name, cut, coronal) in zip(figure.subplots(len(cuts), 3, squeeze=False), cuts):
        shown = {"origin": "lower", "aspect": spacing[2] / spacing[0]} if coronal else {}
        row[0].imshow(cta[cut], cmap="gray", vmin=CTA_WINDOW[0], vmax=CTA_WINDOW[1], **shown)
        row[1].imshow(translated[cut], cmap="gray", vmin=float(np.percentile(translated, 1)),
                      vmax=float(np.percentile(translated, 99.5)), **shown)
        row[2].imshow(cta[cut], cmap="gray", vmin=CTA_WINDOW[0], vmax=CTA_WINDOW[1], **shown)
        segments = np.ma.masked_equal(segmentation[cut], 0)
        row[2].imshow(segments - 1, cmap=colours, vmin=0, vmax=len(labels) - 1, alpha=0.6,
                      interpolation="nearest", **shown)
        for mask, colour in ((reference.heart, "white"), (reference.aorta, "cyan")):
            if mask[cut].any():
                row[2].contour(mask[cut].astype(np.uint8), levels=[0.5], colors=colour, linewidths=0.8)
        for axis, panel in zip(row, ("CTA (HU -200..600)", "translated to MR", "segments; heart, aorta masks")):
            axis.set_title(f"{name}: {panel}", fontsize=8)
            axis.set_axis_off()
    figure.savefig(path, dpi=80)


def evaluate(model: Path, output: Path, *, threads: int = 1, precision: str = "fp32",
             cache: Optional[Path] = None) -> dict:
    """Translate the real CTA with ``model``, score where its segments fall, write the JSON and the figure."""
    reference = load_real_cta(cache)
    started = time.perf_counter()
    result = translate_volume(reference.cta, model, "MR", source="CT", device="cpu", attention=False,
                              threads=threads, precision=precision)
    seconds = time.perf_counter() - started
    labels = read_card(model).labels
    scores = label_shares(result.segmentation.array, labels, reference)
    report = {"model": str(model), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{cpu_model_name()}, {os.cpu_count()} cores", "load_average_1min": os.getloadavg()[0],
              "cta_shape_zyx": list(reference.cta.shape), "translation_seconds": round(seconds, 1),
              "threads": result.threads, "precision": result.precision, **scores}
    output.mkdir(parents=True, exist_ok=True)
    (output / "real_cta.json").write_text(json.dumps(report, indent=2) + "\n")
    title = (f"{model.name} on the real CTA: {scores['left_heart_inside_heart']:.0%} of the left-heart labels inside "
             f"the heart mask, {scores['aorta_inside_aorta']:.0%} of the aorta label inside the aorta mask")
    save_figure(output / "real_cta.png", reference, result.translated.array, result.segmentation.array, labels,
                title)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a cardiac CT -> MR model file (.safetensors)")
    parser.add_argument("--output", type=Path, default=Path("runs/real_cta"), help="folder for the JSON and figure")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"),
                        help="fp32: the same arithmetic on every CPU")
    parser.add_argument("--cache", type=Path, default=None, help=f"real-data cache (default {real_data_cache()})")
    args = parser.parse_args()
    if not args.model.is_file():
        parser.error(f"--model: no model file {args.model}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    report = evaluate(args.model, args.output, threads=args.threads, precision=args.precision, cache=args.cache)
    print("RESULT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
