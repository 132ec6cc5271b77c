"""One SASAN variant of the full phantom preset, trained within a time budget and scored on validation CT.

    .venv/bin/python -m benchmarks.phantom_variant seed1 runs/variants/seed1 --set '{"training": {"seed": 1}}'
    python3 -m benchmarks.phantom_variant steps1500 OUT --set '{"training": {"steps": 1500}}' --device cuda
    .venv/bin/python -m benchmarks.phantom_variant unet3000 OUT --set '{"training": {"segmenter_steps": 3000}}' \
        --sasan-run runs/variants/seed1/sasan

For exploring the preset (seeds, steps, sizes) faster than the whole demo: trains the MR U-Net and
SASAN CT -> MR of ``phantom_demo.yaml`` with ``--set`` merged in, and scores SASAN, "W/o adaptation" and
the U-Net on real MR (its ceiling) on the *validation* subjects (a choice made from it must not see the test
subjects); no CycleGAN baseline, no ablation, no w/ aug. U-Net.
Training stops at ``--budget`` seconds from the start (several variants can then share one lent GPU for a
fixed time); a cut run is scored at its last checkpoint and says so. With ``--sasan-run`` no SASAN is
trained: that finished run is scored with this variant's U-Net (how much the scorer alone moves a score).
Prints one JSON line prefixed ``RESULT``. This is a script, not a test.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import time
from pathlib import Path

import torch

from benchmarks.phantom_protocol import score_model
from sasan import bundle
from sasan.demo import demo_configs, load_preset, merge
from sasan.demo_rows import SASAN
from sasan.protocol import held_out_volumes
from sasan.training.export import export_run
from sasan.training.segmenter import train_segmenter
from sasan.training.trainer import Trainer

log = logging.getLogger("benchmarks.phantom_variant")


class OutOfTime(Exception):
    """Raised in the training loop when the budget is spent."""


def _raise_out_of_time(*_) -> None:
    raise OutOfTime


def train_within(trainer: Trainer, seconds: float) -> bool:
    """Train until done or ``seconds`` have passed; returns whether the run was cut short."""
    signal.signal(signal.SIGALRM, _raise_out_of_time)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1.0))
    try:
        trainer.fit()
        return False
    except OutOfTime:
        log.warning("budget spent at step %d of %d: scoring the last checkpoint", trainer.step, trainer.total_steps)
        return True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def model_device_name(device: str) -> str:
    """The accelerator a run with ``--device`` used, by name, or ``cpu``."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() and device != "cpu" else "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", help="the variant's name in the RESULT line")
    parser.add_argument("output", type=Path, help="folder for its runs, model file and scores")
    parser.add_argument("--set", default="{}", help="JSON merged into the preset, e.g. '{\"training\": {\"seed\": 1}}'")
    parser.add_argument("--budget", type=float, default=3600.0, help="seconds from the start before training stops")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sasan-run", type=Path, help="score this finished SASAN run instead of training one")
    args = parser.parse_args()
    if args.sasan_run is not None and not (args.sasan_run / "checkpoints").is_dir():
        parser.error(f"--sasan-run {args.sasan_run}: not a SASAN run folder (no checkpoints/ in it)")
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.name} %(name)s: %(message)s", datefmt="%H:%M:%S")
    started = time.monotonic()
    overrides = json.loads(args.set)
    preset, _ = load_preset(quick=False)
    configs = demo_configs(preset, merge(overrides, {"training": {"threads": args.threads, "device": args.device}}))
    torch.set_num_threads(args.threads)

    segmenter_run = train_segmenter(configs.segmenter, args.output / "mr_unet")
    training_started = time.monotonic()
    if args.sasan_run is None:
        sasan_run = args.output / "sasan"
        trainer = Trainer(configs.sasan, sasan_run)
        cut, total_steps = train_within(trainer, args.budget - (training_started - started)), trainer.total_steps
    else:
        sasan_run, cut, total_steps = args.sasan_run, False, None
    training_seconds = time.monotonic() - training_started
    model_file = export_run(sasan_run, args.output / "sasan.safetensors", segmenter_run=segmenter_run,
                            overwrite=True)
    model = bundle.load(model_file)
    scores = score_model(model, SASAN, configs.sasan, held_out_volumes(configs.sasan, split="validation"),
                         args.output / "scores", threads=args.threads, device=args.device, split="validation")
    print("RESULT " + json.dumps({
        "name": args.name, "set": overrides, "scored_step": model.card.provenance["steps"],
        "total_steps": total_steps, "cut": cut, "sasan": scores["model_dice"],
        "per_structure": scores["per_structure"], "no_adaptation": scores["no_adaptation"],
        "unet_ceiling_real_mr": scores["unet_on_real_target"],
        "sasan_train_s": round(training_seconds), "total_s": round(time.monotonic() - started),
        "device": model_device_name(args.device)}), flush=True)


if __name__ == "__main__":
    main()
