#!/usr/bin/env bash
# The paper's language-model figures at CPU scale (Section 7, Appendix D; issue #5), on the TinyStories slice in
# ../shared/data/tinystories instead of BabiStories:
#   - Figures 7/13: Memory Mosaic and GPT at depths 1, 2, 4 (d = 128), same hyper-parameters, same batches (same seed);
#   - Figure 8: per-position loss of the deepest pair on out-of-distribution text (WikiText-2 test by default);
#   - Tables 4/5: the 24 Eldan & Li prompts, beam search of width 2 (deepest pair, then the one-block pair);
#   - Figures 14/15/16: attention of one-block models (Mosaic, GPT learned, GPT-RoPE, GPT-ALiBi), 3x longer windows,
#     leaky-average rate against attention width;
#   - length extrapolation (open question 2): per-position loss at 1x, 3x and 8x the training context.
# Everything lands in $OUT/figures/ (PNG + JSON + Markdown per figure, README.md joining them).
#
#   recipes/paper_lm_cpu.sh                                  # all of it, into runs/paper_lm_cpu/
#   ITERS=50 EMBD=64 OUT=runs/paper_lm_quick recipes/paper_lm_cpu.sh     # a quick check of the whole pipeline
#
# Cost: 8 runs of ITERS steps of 16 x 256 tokens (the four depth-4 and depth-2 runs dominate). With the defaults:
# 87 min on 2 cores shared with other jobs (63 min of CPU; results/paper_lm_cpu/README.md); JOBS runs train side by
# side, one thread each. EMBD=256 ITERS=1000 is closer to the issue's example shape (about 4x the cost). Re-running resumes interrupted runs
# (--resume) and skips the data preparation when done. STEPS=train or STEPS=figures runs one half only.
set -euo pipefail
cd "$(dirname "$0")/.."

SRC=${TINYSTORIES:-../shared/data/tinystories}       # train.txt, valid_eot.txt
OOD=${OOD:-../shared/data/ood/wikitext2_raw_test.txt}  # any .txt or .jsonl file (Simple English Wikipedia in the paper)
PROMPTS=${PROMPTS:-../shared/prompts/eldan_li_24.jsonl}
OUT=${OUT:-runs/paper_lm_cpu}
DATA=${DATA:-$OUT/data}
FIG=${FIG:-$OUT/figures}
DEPTHS=${DEPTHS:-1 2 4}
EMBD=${EMBD:-128}
HEADS=${HEADS:-4}
CTX=${CTX:-256}
ITERS=${ITERS:-800}
SEED=${SEED:-1337}
JOBS=${JOBS:-2}
WINDOWS=${WINDOWS:-200}                              # evaluation windows per model and figure
STEPS=${STEPS:-all}
if [ -x .venv/bin/python ]; then PY=${PYTHON:-.venv/bin/python}; else PY=${PYTHON:-python}; fi
mosaic() { "$PY" -m memory_mosaics.cli "$@"; }
export OMP_NUM_THREADS=1
DEEP=$(echo $DEPTHS | tr ' ' '\n' | sort -n | tail -1)

# 1. data: a byte-level BPE of 4096 tokens (a 50k GPT-2 vocabulary would be mostly embedding at this scale)
if [ ! -f "$DATA/meta.json" ]; then
  mosaic prepare --input "$SRC/train.txt" --val "$SRC/valid_eot.txt" --tokenizer bpe --vocab-size 4096 --out "$DATA"
fi

# 2. training: identical flags for every run but the architecture, depth and position encoding, so that every run sees
#    the same mini-batches in the same order (App. D.2); hyper-parameters as in recipes/lm_cpu_tinystories.sh
COMMON=(--data "$DATA" --n-head "$HEADS" --n-embd "$EMBD" --block-size "$CTX" --batch-size 16 --max-iters "$ITERS"
        --lr 3e-3 --min-lr 1e-4 --warmup-iters $((ITERS / 10)) --weight-decay 0.1 --dropout 0.05 --grad-clip 1.0
        --seed "$SEED" --eval-interval $((ITERS / 10)) --eval-batches 8 --log-interval 10
        --ckpt-interval $((ITERS / 5)) --keep-last 1 --device cpu --threads 1 --resume --no-progress)
RUNS=()
for L in $DEPTHS; do RUNS+=("mosaic_L$L:--arch mosaic --n-layer $L" "gpt_L$L:--arch gpt --pos learned --n-layer $L"); done
RUNS+=("gpt_rope_L1:--arch gpt --pos rope --n-layer 1" "gpt_alibi_L1:--arch gpt --pos alibi --n-layer 1")

if [ "$STEPS" != figures ]; then
  mkdir -p "$OUT"
  for spec in "${RUNS[@]}"; do
    name=${spec%%:*}
    # shellcheck disable=SC2086  # the flags are meant to split
    mosaic train --out-dir "$OUT/$name" "${COMMON[@]}" ${spec#*:} > "$OUT/train_$name.log" 2>&1 &
    echo "training $name (log: $OUT/train_$name.log)"
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || { echo "a run failed; see $OUT/train_*.log" >&2; exit 1; }; done
  done
  while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || { echo "a run failed; see $OUT/train_*.log" >&2; exit 1; }; done
fi
[ "$STEPS" = train ] && exit 0

# 3. figures (evaluation only; one process at a time)
DEPTH_RUNS=()
for L in $DEPTHS; do DEPTH_RUNS+=("$OUT/mosaic_L$L" "$OUT/gpt_L$L"); done
ONE=("$OUT/mosaic_L1" "$OUT/gpt_L1" "$OUT/gpt_rope_L1" "$OUT/gpt_alibi_L1")
mosaic paper depth "${DEPTH_RUNS[@]}" --out "$FIG"
mosaic paper ood "$OUT/mosaic_L$DEEP" "$OUT/gpt_L$DEEP" --text "$OOD" --max-windows "$WINDOWS" --out "$FIG"
mosaic paper prompts "$OUT/mosaic_L$DEEP" "$OUT/gpt_L$DEEP" --prompts "$PROMPTS" --max-new-tokens 40 --out "$FIG"
mosaic paper prompts "$OUT/mosaic_L1" "$OUT/gpt_L1" --prompts "$PROMPTS" --max-new-tokens 40 --name prompts_nb1 \
  --out "$FIG"
mosaic paper attention "${ONE[@]}" --extend 3 --max-windows "$WINDOWS" --out "$FIG"
mosaic paper extrapolate "$OUT/mosaic_L1" "$OUT/gpt_rope_L1" "$OUT/gpt_alibi_L1" "$OUT/mosaic_L$DEEP" \
  --factors 1 3 8 --chunk "$CTX" --max-windows "$WINDOWS" --out "$FIG"
mosaic paper report --out "$FIG" --title "Memory Mosaics: language-model figures at CPU scale (TinyStories slice)"
echo "report: $FIG/README.md"
