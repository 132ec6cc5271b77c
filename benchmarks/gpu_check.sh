#!/usr/bin/env bash
# One short check on a lent GPU machine (H100/H200), run from anywhere in the repository; a few minutes:
#   bash benchmarks/gpu_check.sh     # logs and a copy of RESULTS.md land in $OUT (else a temporary folder)
# 1. torch with CUDA: the machine's own python3 if it has it, else wheels carried in .whl/, else pip.
# 2. The inference benchmark on cuda: 5 alternating rounds of the full path (naive fp32, ours, translate_volume's
#    marginal time per slice) against each round's bf16 peak, per network, a batch sweep, a profile, the
#    512x512x300 CT translated + segmented + 8 attention maps twice in a fresh process (seconds per phase:
#    compute against the 1 s goal, peak RSS against 2 GB, GPU peak memory), and translate_volume on 16 slices
#    on the CPU (fp32) vs the GPU (bf16): PSNR, label and attention-map agreement.
# 3. Training steps per second at the paper's size (256², K 8, paper widths, batch 2, bf16, every loss, no
#    pre-training; goal >= 20): benchmarks.training if it is there and takes --device, and in any case the
#    trainer's own step timed directly (median of 20 after 3 warm-up steps).
# 4. The inference and device-pipeline tests there (their device "auto" is the GPU, so they check the CUDA
#    path too, including buffers copied back on a side stream).
# The machine there has no package index: carry SimpleITK, nibabel and monai as wheels in .whl/ (see the
# device notes of the environment). The 2026-11-26 version of this script took 82 s on an H100.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RESULTS_DIR=${OUT:-$(mktemp -d)}
mkdir -p "$RESULTS_DIR"
echo "results: $RESULTS_DIR"
export PYTHONUNBUFFERED=1

if [ -d .whl ]; then  # packages this machine lacks, carried as wheels
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # this checkout's sasan, installed or not
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "no CUDA-enabled torch here; installing one" >&2
    "$PY" -m pip install -q torch safetensors pyyaml  # needs a package index; a lent machine has none (carry .whl)
fi
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv | tee "$RESULTS_DIR/nvidia-smi.csv"

"$PY" -m benchmarks.inference --device cuda --slices 300 --in-plane 512 --batch-sweep 1,8,32,64 --repeats 10 \
    --rounds 5 --round-slices 192 --compare-cpu 16 --threads "$(nproc)" --profile 2>&1 | tee "$RESULTS_DIR/benchmark.log"

if "$PY" -m benchmarks.training --help 2>/dev/null | grep -- "--device" >/dev/null; then
    "$PY" -m benchmarks.training --device cuda 2>&1 | tee "$RESULTS_DIR/training_benchmark.log" || true
fi
"$PY" - <<'EOF' 2>&1 | tee "$RESULTS_DIR/training_steps.log"
import statistics, tempfile, time
from pathlib import Path

import torch, yaml

from sasan.config import config_from_dict
from sasan.demo import merge
from sasan.resources import preset_path
from sasan.training.trainer import Trainer

preset = yaml.safe_load(preset_path("phantom_demo.yaml").read_text())
del preset["model"], preset["losses"]  # the paper's widths, K = 8 and loss weights: the configuration's defaults
config = config_from_dict(merge(preset, {"data": {"image_size": 256}, "training": {
    "batch_size": 2, "precision": "bf16", "device": "cuda", "steps": 10 ** 6, "pretrain_attention_steps": 0,
    "copy_pretrained_attention": False, "segmenter_steps": 0, "segmenter_with_translations": False,
    "ema_decay": 0.0}}))
with tempfile.TemporaryDirectory() as folder:
    trainer = Trainer(config, Path(folder) / "run")
    trainer.nets.train()
    for _ in range(3):  # kernels chosen, caches filled
        trainer.train_step()
    torch.cuda.synchronize()
    seconds = []
    for _ in range(20):
        started = time.perf_counter()
        trainer.train_step()
        torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
step = statistics.median(seconds)
print(f"paper-size training step (256², K 8, paper widths, batch 2, bf16, every loss) on "
      f"{torch.cuda.get_device_name(0)}: median {1000 * step:.1f} ms over 20 steps = {1 / step:.1f} steps/s "
      f"(goal >= 20); peak GPU memory {torch.cuda.max_memory_allocated() / 2 ** 30:.1f} GiB")
EOF
cp benchmarks/RESULTS.md "$RESULTS_DIR/RESULTS.md"

if "$PY" -c "import pytest" 2>/dev/null; then
    "$PY" -m pytest -q -p no:cacheprovider Testing/test_inference.py Testing/test_device_pipeline.py \
        2>&1 | tee "$RESULTS_DIR/tests.log"
fi
