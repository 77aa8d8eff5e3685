#!/usr/bin/env bash
# Language modelling at laptop scale (paper section 7, Figure 7 / Appendix C, shrunk): a Memory Mosaic and a GPT of
# equal parameter count, trained on the same mini-batches in the same order (same --seed) on the TinyStories slice
# in ../shared/data/tinystories, then evaluated and asked to complete the 24 Eldan & Li prompts.
#
# About 15 minutes on 2 CPU cores (886 s measured, results/lm_cpu_tinystories_800): the two models train at the same
# time, one thread each (one thread per process avoids OpenMP synchronisation, which is costly for models this small,
# above all on a busy machine).
#
#   recipes/lm_cpu_tinystories.sh                 # everything, into runs/lm_cpu_tinystories/
#   ITERS=100 OUT=runs/lm_quick recipes/lm_cpu_tinystories.sh    # a quick check
#
# Re-running continues an interrupted run (--resume) and skips the data preparation when it is done.
# Outputs: $OUT/{mosaic,gpt}/ (run.json, log.jsonl, checkpoints, eval_*.json, per_position.csv, stories.jsonl) and
# $OUT/summary.md (the two models side by side).
set -euo pipefail
cd "$(dirname "$0")/.."

SRC=${TINYSTORIES:-../shared/data/tinystories}        # train.txt, valid.txt, valid_eot.txt
PROMPTS=${PROMPTS:-../shared/prompts/eldan_li_24.jsonl}
OUT=${OUT:-runs/lm_cpu_tinystories}
DATA=${DATA:-$OUT/data}
ITERS=${ITERS:-800}
SEED=${SEED:-1337}
if [ -x .venv/bin/python ]; then PY=${PYTHON:-.venv/bin/python}; else PY=${PYTHON:-python}; fi
mosaic() { "$PY" -m memory_mosaics.cli "$@"; }

# 1. data: a byte-level BPE of 4096 tokens (at this scale a 50k GPT-2 vocabulary would be mostly embedding).
#    valid_eot.txt is valid.txt (the same 1,000 stories) with the story boundaries marked.
if [ ! -f "$DATA/meta.json" ]; then
  mosaic prepare --input "$SRC/train.txt" --val "$SRC/valid_eot.txt" --tokenizer bpe --vocab-size 4096 --out "$DATA"
fi

# 2. training: 4 blocks, d = 128, 4 heads, context 256, batch 16 x 256 tokens; the Appendix C recipe otherwise
#    (AdamW, weight decay 0.1, dropout 0.05, warm-up then cosine to 1e-4), with a peak lr suited to the small batch.
COMMON=(--data "$DATA" --n-layer 4 --n-head 4 --n-embd 128 --block-size 256 --batch-size 16 --max-iters "$ITERS"
        --lr 3e-3 --min-lr 1e-4 --warmup-iters $((ITERS / 10)) --weight-decay 0.1 --dropout 0.05 --grad-clip 1.0
        --seed "$SEED" --eval-interval $((ITERS / 8)) --eval-batches 8 --log-interval 10
        --ckpt-interval $((ITERS / 8)) --keep-last 2 --device cpu --threads 1 --resume)
mkdir -p "$OUT"
pids=()
for arch in mosaic gpt; do
  mosaic train --arch "$arch" --out-dir "$OUT/$arch" --no-progress "${COMMON[@]}" > "$OUT/train_$arch.log" 2>&1 &
  pids+=($!)
done
echo "training both models (logs: $OUT/train_mosaic.log, $OUT/train_gpt.log; curves: $OUT/*/log.jsonl)"
for pid in "${pids[@]}"; do wait "$pid" || { echo "training failed; see $OUT/train_*.log" >&2; exit 1; }; done

# 3. evaluation on the whole validation split, on valid.txt as plain text, and the 24 story prompts (beam search of
#    width 2, as in the paper's Table 4).
export OMP_NUM_THREADS=1
for arch in mosaic gpt; do
  (
    mosaic eval "$OUT/$arch" --batch-size 16 --json "$OUT/$arch/eval_valid.json" \
      --per-position "$OUT/$arch/per_position.csv" --device cpu
    mosaic eval "$OUT/$arch" --text "$SRC/valid.txt" --batch-size 16 --json "$OUT/$arch/eval_valid_txt.json" \
      --device cpu
    mosaic generate "$OUT/$arch" --prompts "$PROMPTS" --mode beam --beams 2 --max-new-tokens 40 \
      --out "$OUT/$arch/stories.jsonl" --device cpu > /dev/null
  ) &
done
wait

# 4. summary
"$PY" - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows, stories = [], {}
for arch in ("mosaic", "gpt"):
    run = json.loads((out / arch / "run.json").read_text())
    log = [json.loads(l) for l in (out / arch / "log.jsonl").read_text().splitlines() if l.strip()]
    train = [r for r in log if "loss" in r]
    ev, evt = (json.loads((out / arch / f).read_text()) for f in ("eval_valid.json", "eval_valid_txt.json"))
    total = run["params_total"]
    rows.append(f"| {arch} | {run['params'] / 1e6:.3f}M | {total / 1e6:.3f}M | {train[-1]['step']} | "
                f"{sum(r['loss'] for r in train[-5:]) / len(train[-5:]):.3f} | {ev['loss']:.3f} | {evt['loss']:.3f} | "
                f"{train[-1]['elapsed_s'] / 60:.1f} |")
    stories[arch] = [json.loads(l) for l in (out / arch / "stories.jsonl").read_text().splitlines()]
lines = ["# Memory Mosaic vs GPT on the TinyStories slice (CPU recipe)", "",
         "| model | params (non-embedding) | params (all) | steps | train loss (last 50 steps) | valid loss (shard) "
         "| valid.txt loss | minutes |", "|---|---|---|---|---|---|---|---|", *rows, "",
         "## Story prompts (beam search, width 2)", ""]
for m, g in zip(stories["mosaic"], stories["gpt"]):
    lines += [f"- **{m['prompt']}**", f"  - Memory Mosaic: {m['completion'].strip()!r}",
              f"  - GPT: {g['completion'].strip()!r}"]
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines[:6 + len(rows)]))
PYEOF
echo "summary: $OUT/summary.md"
