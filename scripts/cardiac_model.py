"""Train the cardiac CT -> MR model for real scans (issue #24) on the domain-randomised phantom, export it, score it.

    .venv/bin/python -m scripts.cardiac_model runs/cardiac_model [--seed 0] [--threads 1] [--model FILE]
    .venv/bin/python -m scripts.cardiac_model runs/cardiac_smoke --smoke     # the whole recipe in about a minute

The MR U-Net and SASAN of ``Resources/configs/cardiac_ct_mr.yaml`` (the phantom's "transfer" profile, the
phantom_demo preset's tuned networks and training), trained on that preset's training subjects, exported in
fp16 with that U-Net as one model file (default ``Resources/Models/cardiac_ct_mr.safetensors``, at most 25 MB).
Its card says it was trained on the synthetic phantom only and what it can and cannot do. Then it is scored
once: on the preset's phantom test subjects (the phantom protocol: mean Dice, "W/o adaptation" with the same
U-Net, the U-Net on real phantom MR) and on the real CT angiogram (``benchmarks/real_cta.py``: where its
segments fall against the heart and aorta masks; skipped, saying why, when the scan cannot be fetched).
Both go into the card's ``evaluation`` and ``OUTPUT/evaluation``. Run folders that already hold
checkpoints are resumed. ``--smoke`` runs every stage with a few steps on a few small subjects and writes
``OUTPUT/cardiac_ct_mr_smoke.safetensors``: it checks the recipe, not the model.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Optional

REPOSITORY = Path(__file__).resolve().parents[1]

from benchmarks.phantom_protocol import score_model  # noqa: E402
from benchmarks.real_cta import evaluate as evaluate_real_cta  # noqa: E402
from benchmarks.real_cta_data import RealDataUnavailable  # noqa: E402
from sasan import bundle  # noqa: E402
from sasan.demo import DemoConfigs, demo_configs, load_preset  # noqa: E402
from sasan.demo_rows import phantom_description  # noqa: E402
from sasan.protocol import held_out_volumes  # noqa: E402
from sasan.runtime import torch_threads  # noqa: E402
from sasan.training.checkpoint import latest_checkpoint  # noqa: E402
from sasan.training.export import export_run  # noqa: E402
from sasan.training.segmenter import train_segmenter  # noqa: E402
from sasan.training.trainer import Trainer  # noqa: E402

log = logging.getLogger("scripts.cardiac_model")

PRESET = REPOSITORY / "Resources" / "configs" / "cardiac_ct_mr.yaml"
MODEL = REPOSITORY / "Resources" / "Models" / "cardiac_ct_mr.safetensors"
MAX_MEGABYTES = 25
NAME = "cardiac_ct_mr"
CHEST_WIDTH_MM = 340.0  # an adult chest's left-right width, for the card's pixel size

# Every stage runs, each for a few steps on a few small subjects.
SMOKE = {
    "data": {"phantom_subjects": 6, "phantom_size": 48, "image_size": 32},
    "losses": {"pseudo_label_steps": 2},
    "training": {"steps": 4, "pretrain_attention_steps": 4, "segmenter_steps": 4, "batch_size": 2,
                 "checkpoint_every": 4, "validate_every": 4, "log_every": 1, "image_every": 100000},
}

DESCRIPTION = (
    "Cardiac CT -> MR translation (SASAN, unpaired, 2.5D axial, {size}x{size}) with an MR U-Net that segments "
    "LV myocardium, LA blood, LV blood and the ascending aorta on real or translated MR. Trained on the "
    "synthetic cardiac phantom only (its domain-randomised 'transfer' profile): it has never seen a real scan. "
    "Can: turn a contrast chest CT (axial stack, HU) into a bSSFP-like MR image with the anatomy in place and "
    "outline the four left-heart structures coarsely (the networks see the body at {size}x{size} pixels, about "
    "{pixel_mm:.0f} mm each on an adult chest). Cannot: segment anything else (the right heart, pulmonary trunk, lungs and bones "
    "are present in training but unlabelled), render diagnostic MR contrast, resolve structures smaller than a "
    "few millimetres, or handle scans other than a chest CT (head or abdomen scans are out of its domain); "
    "non-contrast CT and the MR -> CT direction on real MR are untested. Research; not for diagnosis.")


def smoke_configs(overrides: dict) -> dict:
    """``overrides`` with the smoke settings merged in (the smoke settings win)."""
    merged = json.loads(json.dumps(overrides))
    for section, values in SMOKE.items():
        merged.setdefault(section, {}).update(values)
    return merged


def build_configs(seed: int, threads: int, smoke: bool, preset: Path = PRESET) -> DemoConfigs:
    """The MR U-Net and SASAN runs of ``preset`` with the training ``seed`` and ``threads``."""
    mapping, _ = load_preset(quick=False, preset=preset)
    overrides = {"training": {"seed": seed, "threads": threads}}
    configs = demo_configs(mapping, smoke_configs(overrides) if smoke else overrides)
    configs.segmenter.name, configs.sasan.name = f"{NAME}_mr_unet", NAME
    return configs


def train_and_export(configs: DemoConfigs, output: Path, model: Path, seed: int, threads: int) -> Path:
    unet_run, sasan_run = output / "mr_unet", output / "sasan"
    with torch_threads(threads):
        train_segmenter(configs.segmenter, unet_run, resume=latest_checkpoint(unet_run) is not None)
        Trainer(configs.sasan, sasan_run, resume=latest_checkpoint(sasan_run) is not None).fit()
    data = configs.sasan.data
    provenance = {
        "source": f"scripts/cardiac_model.py with {PRESET.relative_to(REPOSITORY)} (training seed {seed})",
        "data": f"{phantom_description(data)}; '{data.phantom_profile}' profile",
        "training data": "the synthetic cardiac phantom only (sasan/data/phantom*.py); no real scan was used for "
                         "training or for any choice",
        "checkpoint rule": "the last step's EMA translator weights and the last U-Net; no checkpoint is picked by "
                           "a score",
    }
    export_run(sasan_run, model, segmenter_run=unet_run, half=True, overwrite=True,
               description=DESCRIPTION.format(size=data.image_size, pixel_mm=CHEST_WIDTH_MM / data.image_size), provenance=provenance)
    megabytes = model.stat().st_size / 2 ** 20
    if megabytes > MAX_MEGABYTES:
        raise RuntimeError(f"{model} is {megabytes:.1f} MB, over the {MAX_MEGABYTES} MB a shipped model may take")
    log.info("exported %s (%.1f MB)", model, megabytes)
    return model


def evaluate(configs: DemoConfigs, model_file: Path, output: Path, threads: int) -> dict:
    """Score the model on the phantom's test subjects and on the real CTA; store both in its card."""
    model = bundle.load(model_file)
    evaluation = {"phantom test subjects": score_model(model, NAME, configs.sasan, held_out_volumes(configs.sasan),
                                                       output / "phantom_test", threads=threads, device="cpu")}
    real = real_cta_scores(model_file, output / "real_cta", threads)
    if real is not None:
        evaluation["real CT angiogram (TotalSegmentator 2.18.0 test scan)"] = real
    card = dataclasses.replace(model.card, evaluation=evaluation)
    bundle.save(model_file, card, model.networks, half=True, overwrite=True)  # fp16 -> fp32 -> fp16 is exact
    (output / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    return evaluation


def real_cta_scores(model_file: Path, output: Path, threads: int) -> Optional[dict]:
    try:
        report = evaluate_real_cta(model_file, output, threads=threads)
    except RealDataUnavailable as error:
        log.warning("the real CTA is not scored: %s", error)
        return None
    keep = ("labels", "left_heart_inside_heart", "heart_covered_by_left_heart_labels", "heart_covered_by_any_label",
            "aorta_inside_aorta", "bars")
    return {key: report[key] for key in keep}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="folder for the two run folders and the evaluation")
    parser.add_argument("--seed", type=int, default=0, help="training seed of both networks")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", type=Path, default=None,
                        help=f"the model file to write (replaced if it exists); default {MODEL.relative_to(REPOSITORY)}, "
                             "with --smoke OUTPUT/cardiac_ct_mr_smoke.safetensors")
    parser.add_argument("--smoke", action="store_true", help="a few steps on a few small subjects: checks the recipe")
    parser.add_argument("--no-evaluation", action="store_true", help="train and export only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model = args.model or (args.output / f"{NAME}_smoke.safetensors" if args.smoke else MODEL)
    configs = build_configs(args.seed, args.threads, args.smoke)
    train_and_export(configs, args.output, model, args.seed, args.threads)
    if not args.no_evaluation:
        evaluation = evaluate(configs, model, args.output / "evaluation", args.threads)
        print(json.dumps(evaluation, indent=2))
    print(model)


if __name__ == "__main__":
    main()
