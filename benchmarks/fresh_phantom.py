"""Score finished phantom models on subjects that no run has seen: the phantom of another seed.

    .venv/bin/python -m benchmarks.fresh_phantom runs/fresh \\
        --model seed0=runs/protocol/full/models/sasan_ct_to_mr.safetensors --model seed1=runs/variants/seed1/sasan.safetensors

Before the demo split its subjects three ways, its held-out volumes (phantom seed 0, three CT subjects) were
the ones its preset was tuned on; it now scores the test subjects of phantom seed 3, and this script adds
subjects of other phantoms to that small test set. It renders the phantom of ``--phantom-seed``
(new anatomy, pose, spacing and noise) and scores each model file (CT -> MR with its MR U-Net) on its
held-out CT, ``--subjects`` x ``--test-fraction`` volumes, next to "W/o adaptation" with the same U-Net,
and scores that U-Net on the held-out real MR of the same phantom (the ceiling of both rows).
Prints one JSON line prefixed ``RESULT`` per model. This is a script, not a test.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from benchmarks.phantom_protocol import score_unseen


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
    if len(dict(args.model)) < len(args.model):
        parser.error("--model: give each NAME once")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    rows = score_unseen(dict(args.model), args.output, phantom_seed=args.phantom_seed, subjects=args.subjects,
                        test_fraction=args.test_fraction, threads=args.threads, device=args.device)
    for row, (_, path) in zip(rows, args.model):
        print("RESULT " + json.dumps({**row, "model": str(path)}), flush=True)


if __name__ == "__main__":
    main()
