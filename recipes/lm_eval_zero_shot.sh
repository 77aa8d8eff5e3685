#!/usr/bin/env bash
# Zero-shot evaluation of a model folder (save_pretrained, mosaic train's ckpt-XXXXXXX, mosaic convert) with
# EleutherAI's lm-evaluation-harness through its `hf` model type. Needs the tasks' datasets: online, or in the
# Hugging Face cache (HF_DATASETS_OFFLINE=1 then). Results in $OUT (JSON per task and samples).
#   recipes/lm_eval_zero_shot.sh runs/lm/ckpt-0002000 [tasks] [out]
set -euo pipefail
MODEL=${1:?usage: $0 MODEL_FOLDER [TASKS] [OUT]}
TASKS=${2:-lambada_openai,hellaswag,piqa,arc_easy,arc_challenge,winogrande}
OUT=${3:-$MODEL/lm_eval}
PY=${PYTHON:-$(dirname "$0")/../.venv/bin/python}
DEVICE=${DEVICE:-$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
# memory_mosaics.hf registers the Auto classes in the harness's own process
"$PY" -c 'import sys, memory_mosaics.hf; from lm_eval.__main__ import cli_evaluate; sys.exit(cli_evaluate())' \
  run --model hf --model_args "pretrained=$MODEL,dtype=float32" --tasks "$TASKS" --device "$DEVICE" \
  --batch_size "${BATCH_SIZE:-8}" --output_path "$OUT" --log_samples "${@:4}"
