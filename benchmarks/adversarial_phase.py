"""Watch the adversarial phase of the phantom preset from one shared attention pre-training.

    .venv/bin/python -m benchmarks.adversarial_phase pretrain runs/adv/pre_seed2 --seed 2
    .venv/bin/python -m benchmarks.adversarial_phase adversarial runs/adv/pre_seed2 runs/adv/own \\
        --set '{"losses": {"pseudo_labels": "own"}}'

``pretrain`` runs the attention pre-training of ``phantom_demo.yaml`` (with ``--seed``) and keeps its last
checkpoint; ``adversarial`` continues a copy of it through the adversarial phase with ``--set`` merged in,
so variants of that phase start from identical attention modules. Every ``--every`` steps it prints, per
structure, the Dice on the held-out CT slices of (1) the CT attention head on real CT and (2) the MR
attention head on the translated CT (the EMA weights: what would be exported). The second is the
quantity the translations are trained for; the full score (the MR U-Net on whole translated volumes)
is ``phantom_variant.py``'s. This is a script, not a test.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import torch

from sasan.config import RunConfig
from sasan.demo import demo_configs, load_preset, merge
from sasan.models.translator import attention_name, direction_networks, translate
from sasan.training.checkpoint import latest_checkpoint
from sasan.training.run_folder import CHECKPOINT_DIR, read_run_config
from sasan.training.trainer import Trainer
from sasan.training.validation import class_dice, evaluation_mode, held_out_slices

log = logging.getLogger("benchmarks.adversarial_phase")


@torch.no_grad()
def score(trainer: Trainer) -> dict:
    """Per-structure Dice of the CT head on real CT and of the MR head on translated CT (EMA weights)."""
    config = trainer.config
    source, target = config.data.source.modality, config.data.target.modality
    images, truth = held_out_slices(trainer.data.validation[source], config.data.image_size, config.data.context,
                                    limit=10_000)
    translator = trainer.translator()
    with evaluation_mode(translator.values()):
        translated, _, source_logits = translate(*direction_networks(translator, source, target), images)
        target_logits = translator[attention_name(target)](translated)[1]
    own = [round(d, 3) for d in class_dice(source_logits.argmax(1), truth, config.num_classes)]
    through = [round(d, 3) for d in class_dice(target_logits.argmax(1), truth, config.num_classes)]
    return {f"{source}_head": own, f"{source}_head_mean": round(sum(own) / len(own), 3),
            "translated": through, "translated_mean": round(sum(through) / len(through), 3)}


def preset_config(overrides: dict) -> RunConfig:
    preset, _ = load_preset(quick=False)
    return demo_configs(preset, merge(overrides, {"training": {"threads": 1}})).sasan


def pretrain(output: Path, seed: int) -> None:
    trainer = Trainer(preset_config({"training": {"seed": seed}}), output)
    while trainer.step < trainer.phases[0]:
        trainer.train_step()
        trainer.step += 1
    trainer.save()
    log.info("pre-trained %d steps into %s", trainer.step, output)


def adversarial(pretrained: Path, output: Path, overrides: dict, every: int) -> None:
    checkpoint = latest_checkpoint(pretrained)
    if checkpoint is None:
        raise SystemExit(f"{pretrained} holds no pre-training checkpoint: run the pretrain command first")
    # The pre-training's seed carries on (the data order of the adversarial phase) unless --set names another.
    config = preset_config(merge({"training": {"seed": read_run_config(pretrained).training.seed}}, overrides))
    (output / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=False)
    shutil.copy(checkpoint, output / CHECKPOINT_DIR)
    trainer = Trainer(config, output, resume=True)
    end = trainer.phases[0] + trainer.phases[1]
    started = time.monotonic()
    while trainer.step < end:
        trainer.train_step()
        trainer.step += 1
        if trainer.step % every == 0 or trainer.step == end:
            print(json.dumps({"step": trainer.step, "seconds": round(time.monotonic() - started),
                              **score(trainer)}), flush=True)
    trainer.save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    first = commands.add_parser("pretrain", help="the attention pre-training alone")
    first.add_argument("output", type=Path)
    first.add_argument("--seed", type=int, default=0)
    second = commands.add_parser("adversarial", help="the adversarial phase from a pre-training")
    second.add_argument("pretrained", type=Path)
    second.add_argument("output", type=Path)
    second.add_argument("--set", default="{}", help="JSON merged into the preset")
    second.add_argument("--every", type=int, default=125)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(1)
    if args.command == "pretrain":
        pretrain(args.output, args.seed)
    else:
        adversarial(args.pretrained, args.output, json.loads(args.set), args.every)


if __name__ == "__main__":
    main()
