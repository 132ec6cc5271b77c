#!/usr/bin/env bash
# The head CT <-> T1 MRI model, end to end: fetch the real scans, derive the labels, train, export, evaluate.
#
#   scripts/head_model/train.sh            (from anywhere; ~70 min on 2 CPU cores; rerun to resume)
#
# Environment: PYTHON (default .venv/bin/python), RUN (run folder, default runs/head_ct_mr),
# MODEL (output, default Resources/Models/head_ct_mr.safetensors).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
RUN=${RUN:-runs/head_ct_mr}
MODEL=${MODEL:-Resources/Models/head_ct_mr.safetensors}
export PATH="$(dirname "$PYTHON"):$PATH"   # the fetch script needs a python3 with numpy and nibabel

"$PYTHON" -m scripts.head_model.fetch_and_prepare --real data/real --out data/head
resume=()
if [ -d "$RUN/checkpoints" ]; then resume=(--resume); fi
"$PYTHON" -m sasan train Resources/configs/head_ct_mr.yaml --output "$RUN" "${resume[@]}"
"$PYTHON" -m scripts.head_model.export_model "$RUN" "$MODEL"
"$PYTHON" -m scripts.head_model.evaluate --model "$MODEL" --data data/head --real data/real \
    --figures benchmarks/head_model --write-card
