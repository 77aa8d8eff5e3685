#!/usr/bin/env bash
# The paper's language-model figures at paper scale (Section 7, Appendix C/D; issue #5): GPT-2-small width (d = 768,
# 12 heads), GPT-2 tokenizer, context 512, global batch 512, AdamW (weight decay 0.1, betas 0.9/0.95), lr 5e-3 with
# 2000 warm-up steps then cosine to 1e-4, dropout 0.05, 80k steps; the paper used 64 V100s.
#   - Figures 7/13: Memory Mosaic and GPT at depths 1, 4, 8, 12, 18, identical flags and batches (same SEED);
#   - Figure 8: the 12-block pair on out-of-distribution text (Simple English Wikipedia in the paper: pass OOD=...);
#   - Tables 4/5: the 18-block and the 1-block pairs on the 24 prompts, beam search of width 2;
#   - Figures 14/15/16 and length extrapolation: one-block Mosaic, GPT (learned), GPT-RoPE, GPT-ALiBi.
#
#   recipes/paper_lm_gpu.sh                                      # one node: every run in turn, then the figures
#   NNODES=8 MASTER=node0:29500 ONLY=mosaic_L12 recipes/paper_lm_gpu.sh   # one run, on 8 nodes (run on each node)
#   STEPS=figures recipes/paper_lm_gpu.sh                        # the figures, once the runs are done (one GPU)
#
# Data: BabiStories (github.com/facebookresearch/MemoryMosaics) as INPUT=train.txt VAL=valid.txt, or TinyStories from
# Hugging Face when online (the default), prepared once into DATA. Re-running resumes from the newest checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-runs/paper_lm_gpu}
DATA=${DATA:-runs/data/babistories_gpt2}
FIG=${FIG:-$OUT/figures}
OOD=${OOD:-../shared/data/ood/wikitext2_raw_test.txt}
PROMPTS=${PROMPTS:-../shared/prompts/eldan_li_24.jsonl}
DEPTHS=${DEPTHS:-1 4 8 12 18}
OOD_DEPTH=${OOD_DEPTH:-12}                          # Figure 8 uses 12-block models
TABLE_DEPTH=${TABLE_DEPTH:-18}                      # Table 4 uses 18-block models
NNODES=${NNODES:-1}
NPROC=${NPROC:-$(python -c 'import torch; print(max(1, torch.cuda.device_count()))' 2>/dev/null || echo 1)}
MASTER=${MASTER:-localhost:29500}
MICRO=${MICRO:-8}                                   # sequences per GPU per forward (accumulation keeps 512 global)
ITERS=${ITERS:-80000}
SEED=${SEED:-1337}
COMPILE=${COMPILE:---compile}
ONLY=${ONLY:-}                                      # train only this run (e.g. gpt_L18)
STEPS=${STEPS:-all}
WINDOWS=${WINDOWS:-5000}                            # the paper averages attention over 5000 sequences
if [ -x .venv/bin/python ]; then PY=${PYTHON:-.venv/bin/python}; else PY=${PYTHON:-python}; fi
mosaic() { "$PY" -m memory_mosaics.cli "$@"; }

# 1. data (once; a shared file system is assumed for multi-node runs)
if [ "$STEPS" != figures ] && [ ! -f "$DATA/meta.json" ]; then
  if [ -n "${INPUT:-}" ]; then
    mosaic prepare --input "$INPUT" ${VAL:+--val "$VAL"} --tokenizer gpt2 --out "$DATA"
  else
    mosaic prepare --hf-dataset tinystories --hf-val-split validation --tokenizer gpt2 --out "$DATA"
  fi
fi

# 2. training: the flags of recipes/lm_paper_babistories.sh; only the architecture, depth and positions change
RUNS=()
for L in $DEPTHS; do RUNS+=("mosaic_L$L:--arch mosaic --n-layer $L" "gpt_L$L:--arch gpt --pos learned --n-layer $L"); done
RUNS+=("gpt_rope_L1:--arch gpt --pos rope --n-layer 1" "gpt_alibi_L1:--arch gpt --pos alibi --n-layer 1")
if [ "$STEPS" != figures ]; then
  for spec in "${RUNS[@]}"; do
    name=${spec%%:*}
    if [ -n "$ONLY" ] && [ "$ONLY" != "$name" ]; then continue; fi
    # shellcheck disable=SC2086  # the flags are meant to split
    torchrun --nnodes "$NNODES" --nproc_per_node "$NPROC" --rdzv_backend c10d --rdzv_endpoint "$MASTER" \
      -m memory_mosaics.cli train ${spec#*:} --data "$DATA" --out-dir "$OUT/$name" --resume \
      --n-head 12 --n-embd 768 --block-size 512 --pad-vocab 64 \
      --batch-size 512 --micro-batch-size "$MICRO" --max-iters "$ITERS" \
      --lr 5e-3 --min-lr 1e-4 --warmup-iters 2000 --weight-decay 0.1 --beta1 0.9 --beta2 0.95 --grad-clip 1.0 \
      --dropout 0.05 --seed "$SEED" --dtype auto $COMPILE \
      --eval-interval 1000 --eval-batches 40 --log-interval 50 --ckpt-interval 2000 --keep-last 2 --no-progress
  done
fi
if [ "$STEPS" = train ] || [ -n "$ONLY" ]; then exit 0; fi

# 3. figures, on one GPU
DEPTH_RUNS=()
for L in $DEPTHS; do DEPTH_RUNS+=("$OUT/mosaic_L$L" "$OUT/gpt_L$L"); done
ONE=("$OUT/mosaic_L1" "$OUT/gpt_L1" "$OUT/gpt_rope_L1" "$OUT/gpt_alibi_L1")
DEV=(--device auto --batch-size 32)
mosaic paper depth "${DEPTH_RUNS[@]}" --out "$FIG"
mosaic paper ood "$OUT/mosaic_L$OOD_DEPTH" "$OUT/gpt_L$OOD_DEPTH" --text "$OOD" --max-windows 0 "${DEV[@]}" --out "$FIG"
mosaic paper prompts "$OUT/mosaic_L$TABLE_DEPTH" "$OUT/gpt_L$TABLE_DEPTH" --prompts "$PROMPTS" --max-new-tokens 60 \
  --device auto --out "$FIG"
mosaic paper prompts "$OUT/mosaic_L1" "$OUT/gpt_L1" --prompts "$PROMPTS" --max-new-tokens 60 --name prompts_nb1 \
  --device auto --out "$FIG"
mosaic paper attention "${ONE[@]}" --extend 3 --max-windows "$WINDOWS" "${DEV[@]}" --out "$FIG"
mosaic paper extrapolate "$OUT/mosaic_L1" "$OUT/gpt_rope_L1" "$OUT/gpt_alibi_L1" "$OUT/mosaic_L$OOD_DEPTH" \
  --factors 1 3 8 --max-windows 1000 "${DEV[@]}" --out "$FIG"
mosaic paper report --out "$FIG" --title "Memory Mosaics: language-model figures at paper scale"
echo "report: $FIG/README.md"
