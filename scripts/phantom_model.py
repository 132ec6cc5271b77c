"""Train the phantom model that ``sasan demo --quick`` scores (Resources/Models/phantom_ct_mr.safetensors).

    .venv/bin/python -m scripts.phantom_model runs/phantom_model [--seed 0] [--threads 1] [--model FILE]

The full demo's MR U-Net and SASAN runs (``Resources/configs/phantom_demo.yaml``, the given training seed),
on the training subjects of that preset's phantom split, exported in fp16 as one model file with that
U-Net and the fingerprint of the split's training scans (the input check, scaled by its validation subjects). Its card's provenance names the phantom and the split, which the quick demo checks before scoring
the model on the split's test subjects. Run folders that already hold checkpoints are resumed. About 35
minutes on one core of a 2-core AMD EPYC (Zen 4).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]

from sasan.demo import demo_configs, load_preset  # noqa: E402
from sasan.demo_quick import SHIPPED_MODEL  # noqa: E402
from sasan.demo_rows import SASAN, phantom_description  # noqa: E402
from sasan.runtime import torch_threads  # noqa: E402
from sasan.training.checkpoint import latest_checkpoint  # noqa: E402
from sasan.training.export import export_run  # noqa: E402
from sasan.training.segmenter import train_segmenter  # noqa: E402
from sasan.training.trainer import Trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="folder for the two run folders")
    parser.add_argument("--seed", type=int, default=0, help="training seed of both networks")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", type=Path, default=REPOSITORY / "Resources" / "Models" / SHIPPED_MODEL,
                        help="the model file to write (replaced if it exists)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    preset, _ = load_preset(quick=False)
    configs = demo_configs(preset, {"training": {"seed": args.seed, "threads": args.threads}})
    unet_run, sasan_run = args.output / "mr_unet", args.output / "sasan"
    with torch_threads(args.threads):
        train_segmenter(configs.segmenter, unet_run, resume=latest_checkpoint(unet_run) is not None)
        Trainer(configs.sasan, sasan_run, resume=latest_checkpoint(sasan_run) is not None).fit()
    data = configs.sasan.data
    export_run(sasan_run, args.model, segmenter_run=unet_run, half=True, overwrite=True,
               description=f"{SASAN} CT -> MR on the embedded phantom, trained by the full protocol of `sasan demo` "
                           f"(training seed {args.seed}); scored by `sasan demo --quick` on the split's test "
                           "subjects; for trying the tools, not for real images",
               provenance={"source": "scripts/phantom_model.py", "data": phantom_description(data)})
    print(args.model)


if __name__ == "__main__":
    main()
