#!/usr/bin/env bash
# Issue #23, item 6: v1, v2 (random m), v2 (fixed m) and llama on the TinyStories slice, 800 steps, equal
# parameters outside the vocabulary matrices, the same batches in the same order (one seed). GPT-2 of the same recipe:
# results/lm_cpu_tinystories_800 (recipes/lm_cpu_tinystories.sh; not re-trained here, for lack of time).
#   results/v2_cpu_800/run.sh                 # trains (two at a time, one thread each), evaluates, plots
#   PHASE=eval results/v2_cpu_800/run.sh      # only evaluate.sh (the evaluation and the plots)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
mosaic() { "$PY" -m memory_mosaics.cli "$@"; }
DATA=${DATA:-runs/data/tinystories_bpe4k}
OUT=${OUT:-runs/v2_800}
RES=results/v2_cpu_800
PHASE=${PHASE:-all}
if [ ! -f "$DATA/meta.json" ]; then  # the byte-level BPE of recipes/lm_cpu_tinystories.sh
  mosaic prepare --input ../shared/data/tinystories/train.txt --val ../shared/data/tinystories/valid_eot.txt \
    --tokenizer bpe --vocab-size 4096 --out "$DATA"
fi
mkdir -p "$OUT"
# The recipe of recipes/lm_cpu_tinystories.sh (800 steps); windows scaled to the context of 256: h = 64, m drawn per
# step from [16, 64] (random) or fixed at 16, and m = 16 at evaluation for both.
COMMON="--data $DATA --n-layer 4 --n-head 4 --n-embd 128 --block-size 256 --batch-size 16 --max-iters 800
  --lr 3e-3 --min-lr 1e-4 --warmup-iters 80 --weight-decay 0.1 --dropout 0.05 --grad-clip 1.0 --seed 1337
  --eval-interval 100 --eval-batches 8 --log-interval 10 --ckpt-interval 100 --keep-last 1 --device cpu --threads 1
  --no-progress --resume --short-window 64 --long-delay 16"
# SwiGLU widths that give every model ~0.79M parameters outside the token embedding and the classifier
# (v1 and GPT-2 tie the two; v2 and llama do not, as the paper's).
declare -A ARGS=(
  [mosaic]="--arch mosaic"
  [mosaic2]="--arch mosaic2 --ffn-hidden 256 --long-delay-min 16 --long-delay-max 64"
  [mosaic2_fixed]="--arch mosaic2 --ffn-hidden 256 --long-delay-min 16 --long-delay-max 16"
  [llama]="--arch llama --ffn-hidden 344"
)
train() { mosaic train ${ARGS[$1]} --out-dir "$OUT/$1" $COMMON > "$OUT/train_$1.log" 2>&1; }
if [ "$PHASE" = all ]; then  # two lanes, one core each
  (train mosaic2 && train mosaic2_fixed) & a=$!
  (train llama && train mosaic) & b=$!
  wait $a && wait $b || { echo "a training failed; see $OUT/train_*.log" >&2; exit 1; }
fi
OUT="$OUT" DATA="$DATA" bash "$RES/evaluate.sh"
