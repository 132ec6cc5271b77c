"""The CycleGAN baseline's settings chosen on the phantom's validation subjects, as SASAN's were chosen.

    .venv/bin/python -m benchmarks.cyclegan_tuning --protocol runs/protocol --threads 1

or one candidate per core (``--train-only --candidates NAME`` each), then ``--resume`` to score them all.

Trains each candidate (the full demo's CycleGAN run with the candidate's changes, training seed 0) and exports
it with the MR U-Net of the full protocol's seed-0 run in ``--protocol`` (every candidate is read by the same
U-Net), then scores it on the validation CT subjects; the published settings' row is the protocol's own
seed-0 CycleGAN model, scored the same way. No test subject is read. Writes one section into RESULTS.md with
each candidate's validation Dice and the winner: the demo's ``CYCLEGAN_OVERRIDES`` should then be the
winner's. This is a script, not a test.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import time
from pathlib import Path

from benchmarks.inference import write_section
from benchmarks.phantom_protocol import DEMO_MODEL_FILES, RESULTS, score_model
from sasan.bundle import load as load_model
from sasan.demo import _train_and_export, demo_configs, load_preset
from sasan.demo_rows import CYCLEGAN
from sasan.protocol import held_out_volumes
from sasan.runtime import cpu_model_name, torch_threads

log = logging.getLogger("benchmarks.cyclegan_tuning")
SEED = 0
PUBLISHED = "published"
# Each candidate changes the published settings (sasan/demo.py CYCLEGAN_OVERRIDES) toward what worked for
# SASAN on the same data: its learning rate, then its identity weight as well.
CANDIDATES = {
    "lr5e-4": {"training": {"lr": 0.0005}},
    "lr5e-4_identity2.5": {"training": {"lr": 0.0005}, "losses": {"identity": 2.5}},
}
TITLE = "## CycleGAN baseline: settings chosen on the validation subjects (CPU)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocol", type=Path, default=Path("runs/protocol"),
                        help="the full protocol's --output (its seed-0 run gives the MR U-Net and the published row)")
    parser.add_argument("--output", type=Path, default=Path("runs/cyclegan_tuning"))
    parser.add_argument("--candidates", nargs="+", choices=sorted(CANDIDATES), default=sorted(CANDIDATES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument("--train-only", action="store_true",
                        help="train and export the candidates, score nothing: run one process per candidate, then "
                             "once more with --resume to score them all")
    parser.add_argument("--resume", action="store_true",
                        help="continue each candidate's run from its last checkpoint (a finished run only reloads)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    seed_run = args.protocol / "full" / f"seed{SEED}"
    published_file = seed_run / "models" / DEMO_MODEL_FILES[CYCLEGAN]
    segmenter_run = seed_run / "runs" / "mr_unet"
    if not published_file.is_file() or not segmenter_run.is_dir():
        parser.error(f"--protocol: no finished seed-{SEED} run in {seed_run} (run benchmarks.phantom_protocol first)")
    preset, _ = load_preset(quick=False)
    started, load_before, wall_start = datetime.datetime.now(), os.getloadavg()[0], time.monotonic()
    files = {PUBLISHED: published_file}
    with torch_threads(args.threads):
        for name in args.candidates:
            config = demo_configs(preset, {"training": {"seed": SEED, "threads": args.threads}},
                                  cyclegan_changes=CANDIDATES[name]).cyclegan
            files[name] = _train_and_export(CYCLEGAN, config, args.output / "runs" / name,
                                            args.output / "models" / f"cyclegan_{name}.safetensors", segmenter_run,
                                            "full", overwrite=True, resume=args.resume)
        if args.train_only:
            return
        scoring = demo_configs(preset, {"training": {"seed": SEED}}, full=False).sasan
        volumes = held_out_volumes(scoring, split="validation")
        rows = {name: score_model(load_model(path), name, scoring, volumes, args.output / "scores" / name,
                                  threads=args.threads, split="validation") for name, path in files.items()}
    winner = max(rows, key=lambda name: rows[name]["model_dice"])
    lines = [TITLE, "",
             f"{started:%Y-%m-%d %H:%M} · {cpu_model_name()}, {os.cpu_count()} cores · {args.threads} thread(s) · "
             f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after · "
             f"{(time.monotonic() - wall_start) / 60:.1f} min wall", "",
             f"Training seed {SEED}; the {len(volumes)} validation CT subjects of the demo's phantom, each model read "
             f"by the protocol's seed-{SEED} MR U-Net. `{PUBLISHED}` is sasan/demo.py's CYCLEGAN_OVERRIDES (Zhu et "
             "al.'s settings); each candidate changes them as named.", "",
             "| CycleGAN settings | validation mean Dice | " + " | ".join(rows[PUBLISHED]["per_structure"]) + " |",
             "| --- | --- |" + " --- |" * len(rows[PUBLISHED]["per_structure"])]
    lines += [f"| {name} | {row['model_dice']:.3f} ± {row['model_dice_std']:.3f} | "
              + " | ".join(f"{value:.3f}" for value in row["per_structure"].values()) + " |" for name, row in rows.items()]
    lines += ["", f"Chosen on validation: **{winner}**"
              + ("" if winner == PUBLISHED else f" (changes {CANDIDATES[winner]} to CYCLEGAN_OVERRIDES)") + "."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section(text, TITLE, RESULTS)


if __name__ == "__main__":
    main()
