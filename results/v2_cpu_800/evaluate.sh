#!/usr/bin/env bash
# The evaluation of run.sh's five models (called at its end; PHASE=eval run.sh runs only this).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
mosaic() { "$PY" -m memory_mosaics.cli "$@"; }
OUT=${OUT:-runs/v2_800}
RES=results/v2_cpu_800
export OMP_NUM_THREADS=1
evaluate() {  # the whole validation shard (valid_eot.txt: 779 windows of 256), per position
  mkdir -p "$RES/$1" && cp "$OUT/$1/run.json" "$OUT/$1/log.jsonl" "$RES/$1/"
  mosaic eval "$OUT/$1" --batch-size 16 --device cpu --json "$RES/$1/eval_valid.json" \
    --per-position "$RES/$1/per_position.csv" > /dev/null
  case $1 in mosaic2*)  # the Table 2 ablation: the long-term memory removed at inference
    mosaic eval "$OUT/$1" --batch-size 16 --device cpu --no-long-term --json "$RES/$1/eval_valid_no_long_term.json" \
      > /dev/null ;;
  esac
}
(evaluate mosaic2; evaluate mosaic2_fixed) & a=$!
(evaluate llama; evaluate mosaic) & b=$!
wait $a && wait $b
MODELS=("Memory Mosaic v1=$OUT/mosaic" "Memory Mosaic v2 (random m)=$OUT/mosaic2" \
        "Memory Mosaic v2 (fixed m)=$OUT/mosaic2_fixed" "llama (RoPE)=$OUT/llama")
# per-position loss out to 8x the training context; the Memory Mosaics streamed in chunks of 256
(OMP_NUM_THREADS=1 mosaic paper extrapolate "${MODELS[@]}" --text ../shared/data/tinystories/valid.txt \
  --factors 1 2 4 8 --chunk 256 --max-windows 32 --batch-size 8 --out "$RES/extrapolate_tinystories" > /dev/null) &
(OMP_NUM_THREADS=1 mosaic paper extrapolate "${MODELS[@]}" --text ../shared/data/ood/wikitext2_raw_test.txt \
  --factors 1 2 4 8 --chunk 256 --max-windows 32 --batch-size 8 --out "$RES/extrapolate_wikitext2" > /dev/null) &
wait
"$PY" "$RES/report.py" "$RES"
