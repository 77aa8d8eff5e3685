#!/usr/bin/env bash
# Language modelling at paper scale (section 7, Figure 7, Appendix C): GPT-2-small shape (12 blocks, d = 768,
# 12 heads), GPT-2 tokenizer, context 512, global batch 512, AdamW (weight decay 0.1), lr 5e-3 with 2000 warm-up steps
# then cosine to 1e-4, dropout 0.05, 80k steps, on BabiStories (or TinyStories). The paper used 64 V100s.
# The same command trains ARCH=mosaic and ARCH=gpt on the same mini-batches in the same order (same SEED).
#
# One node, 8 GPUs:           ARCH=mosaic recipes/lm_paper_babistories.sh
# 8 nodes x 8 GPUs (torchrun rendezvous; run on every node with the same MASTER):
#                             NNODES=8 MASTER=node0:29500 ARCH=gpt recipes/lm_paper_babistories.sh
# The GPT's position encoding: POS=rope (or alibi, none); the default is GPT-2's learned positions.
# Fewer GPUs or less memory:  MICRO=4 ... (the gradient accumulation grows so that the global batch stays 512)
#
# Data: BabiStories from github.com/facebookresearch/MemoryMosaics as .txt/.jsonl files (INPUT=..., VAL=...), or, if
# this machine is online, TinyStories from Hugging Face (the default). It is prepared once (DATA=... to reuse).
# Interrupted or pre-empted jobs: run the same command again; it resumes from the newest complete checkpoint.
# Not given in the paper, taken from nanoGPT (the GPT-2 reproduction the authors started from): betas (0.9, 0.95),
# gradient clipping at 1.0, the vocabulary padded to a multiple of 64 (50257 -> 50304).
set -euo pipefail
cd "$(dirname "$0")/.."

ARCH=${ARCH:-mosaic}
LAYERS=${LAYERS:-12}
OUT=${OUT:-runs/lm_paper_${ARCH}_nb${LAYERS}}
DATA=${DATA:-runs/data/babistories_gpt2}
NNODES=${NNODES:-1}
NPROC=${NPROC:-$(python -c 'import torch; print(max(1, torch.cuda.device_count()))' 2>/dev/null || echo 1)}
MASTER=${MASTER:-localhost:29500}
MICRO=${MICRO:-8}                 # sequences per GPU per forward: 8 x 64 GPUs = 512, no accumulation
ITERS=${ITERS:-80000}
SEED=${SEED:-1337}
COMPILE=${COMPILE:---compile}
if [ -x .venv/bin/python ]; then PY=${PYTHON:-.venv/bin/python}; else PY=${PYTHON:-python}; fi

# 1. data (once, on one machine; a shared file system is assumed for multi-node runs)
if [ ! -f "$DATA/meta.json" ]; then
  if [ -n "${INPUT:-}" ]; then
    "$PY" -m memory_mosaics.cli prepare --input "$INPUT" ${VAL:+--val "$VAL"} --tokenizer gpt2 --out "$DATA"
  else
    "$PY" -m memory_mosaics.cli prepare --hf-dataset tinystories --hf-val-split validation --tokenizer gpt2 \
      --out "$DATA"
  fi
fi

# 2. training (rank 0 logs to $OUT/log.jsonl and writes $OUT/ckpt-XXXXXXX/ every 2000 steps, keeping 3)
torchrun --nnodes "$NNODES" --nproc_per_node "$NPROC" --rdzv_backend c10d --rdzv_endpoint "$MASTER" \
  -m memory_mosaics.cli train --arch "$ARCH" --data "$DATA" --out-dir "$OUT" --resume \
  --n-layer "$LAYERS" --n-head 12 --n-embd 768 --block-size 512 --pad-vocab 64 --pos "${POS:-learned}" \
  --batch-size 512 --micro-batch-size "$MICRO" --max-iters "$ITERS" \
  --lr 5e-3 --min-lr 1e-4 --warmup-iters 2000 --weight-decay 0.1 --beta1 0.9 --beta2 0.95 --grad-clip 1.0 \
  --dropout 0.05 --seed "$SEED" --dtype auto $COMPILE \
  --eval-interval 1000 --eval-batches 40 --log-interval 50 --ckpt-interval 2000 --keep-last 3

# 3. evaluation and the 24 story prompts (one GPU)
"$PY" -m memory_mosaics.cli eval "$OUT" --batch-size 32 --json "$OUT/eval_valid.json" \
  --per-position "$OUT/per_position.csv"
"$PY" -m memory_mosaics.cli generate "$OUT" --prompts "${PROMPTS:-../shared/prompts/eldan_li_24.jsonl}" \
  --mode beam --beams 2 --max-new-tokens 60 --out "$OUT/stories.jsonl"
