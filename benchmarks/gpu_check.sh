#!/usr/bin/env bash
# One short inference check on a lent GPU machine (H100/H200), run from anywhere in the repository:
#   bash benchmarks/gpu_check.sh     # logs and a copy of RESULTS.md land in $OUT (else a temporary folder)
# 1. torch with CUDA: the machine's own python3 if it has it, else wheels carried in .whl/, else pip.
# 2. The inference benchmark on cuda: naive vs ours per network, batch sweep, a profile, a 300-slice
#    512² volume translated + segmented + attention maps (GPU peak memory), and translate_volume on
#    16 slices on the CPU (fp32) vs the GPU (bf16): PSNR, label and attention-map agreement.
# 3. The inference tests there (their device "auto" is the GPU, so they check the CUDA path too).
# On a lent H100 (2026-11-26) it took 82 s. The machine there has no package index: carry SimpleITK,
# nibabel and monai as wheels in .whl/ (see the device notes of the environment).
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
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "no CUDA-enabled torch here; installing one" >&2
    "$PY" -m pip install -q torch safetensors pyyaml  # needs a package index; a lent machine has none (carry .whl)
fi
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv | tee "$RESULTS_DIR/nvidia-smi.csv"

"$PY" -m benchmarks.inference --device cuda --slices 300 --in-plane 512 --batch-sweep 1,8,32,64 --repeats 10 \
    --compare-cpu 16 --threads "$(nproc)" --profile 2>&1 | tee "$RESULTS_DIR/benchmark.log"
cp benchmarks/RESULTS.md "$RESULTS_DIR/RESULTS.md"

if "$PY" -c "import pytest" 2>/dev/null; then
    "$PY" -m pytest -q -p no:cacheprovider Testing/test_inference.py 2>&1 | tee "$RESULTS_DIR/tests.log"
fi
