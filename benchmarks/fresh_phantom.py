"""Score finished phantom models on subjects that no run has seen: the phantom of another seed.

    .venv/bin/python benchmarks/fresh_phantom.py runs/fresh \\
        --model seed0=runs/protocol/full/models/sasan_ct_to_mr.safetensors --model seed1=runs/variants/seed1/sasan.safetensors

The demo's held-out volumes (phantom seed 0, three CT subjects) are the ones its preset was tuned on, so
their scores are optimistic and, with three volumes, noisy. This renders the phantom of ``--phantom-seed``
(new anatomy, pose, spacing and noise) and scores each model file (CT -> MR with its MR U-Net) on its
held-out CT, ``--subjects`` x ``--test-fraction`` volumes, next to "W/o adaptation" with the same U-Net,
and scores that U-Net on the held-out real MR of the same phantom (the ceiling of both rows).
Prints one JSON line prefixed ``RESULT`` per model. This is a script, not a test.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phantom_protocol import mean_dice, real_target_dice  # noqa: E402  (benchmarks/phantom_protocol.py)
from sasan import bundle  # noqa: E402
from sasan.baselines import UntranslatedSegmenter, no_adaptation  # noqa: E402
from sasan.demo import NO_ADAPTATION, SASAN, demo_configs, load_preset, merge  # noqa: E402
from sasan.evaluation import MEAN_STRUCTURE, summarize  # noqa: E402
from sasan.protocol import held_out_volumes, run_methods, translation_method  # noqa: E402

log = logging.getLogger("benchmarks.fresh_phantom")


def named_model(text: str) -> tuple[str, Path]:
    """``NAME=PATH`` of a model file that exists."""
    name, separator, path = text.partition("=")
    if not separator or not name or not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=PATH of an existing model file")
    return name, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output", type=Path, help="folder for the scored volumes")
    parser.add_argument("--model", type=named_model, action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--phantom-seed", type=int, default=1, help="not 0: the demo's own phantom")
    parser.add_argument("--subjects", type=int, default=16, help="phantom subjects per modality")
    parser.add_argument("--test-fraction", type=float, default=0.75, help="share of them held out and scored")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    preset, _ = load_preset(quick=False)
    fresh = {"data": {"phantom_seed": args.phantom_seed, "phantom_subjects": args.subjects,
                      "test_fraction": args.test_fraction}}
    config = demo_configs(preset, merge(fresh, {"training": {"threads": args.threads}})).sasan
    data = config.data
    source, target = data.source.modality, data.target.modality
    volumes = held_out_volumes(config)
    log.info("%d held-out %s volumes of phantom seed %d", len(volumes), source, args.phantom_seed)

    for name, path in args.model:
        started = time.monotonic()
        model = bundle.load(path)
        if model.segmenter(target) is None:
            parser.error(f"--model {name}={path}: the model has no {target} U-Net to score with")
        unet = UntranslatedSegmenter(model.segmenter(target), model.card.image_size, model.card.context, data.axis,
                                     args.device)
        methods = {NO_ADAPTATION: no_adaptation(unet, data.source.normalization, data.source.crop),
                   SASAN: translation_method(model, source, target, device=args.device, threads=args.threads)}
        result = run_methods(methods, volumes, data.labels, args.output / name, target=target, overwrite=True)
        summary = summarize(result.segmentation_rows)
        print("RESULT " + json.dumps({
            "name": name, "model": str(path), "phantom_seed": args.phantom_seed, "volumes": len(volumes),
            "model_dice": round(mean_dice(summary, SASAN), 3),
            "model_dice_std": round(next(row["dice_std"] for row in summary
                                         if row["method"] == SASAN and row["structure"] == MEAN_STRUCTURE), 3),
            "per_structure": {row["structure"]: round(row["dice_mean"], 3) for row in summary
                              if row["method"] == SASAN and row["structure"] != MEAN_STRUCTURE},
            "no_adaptation": round(mean_dice(summary, NO_ADAPTATION), 3),
            "unet_on_real_target": round(real_target_dice(model.segmenter(target), config, args.device), 3),
            "seconds": round(time.monotonic() - started)}), flush=True)


if __name__ == "__main__":
    main()
