#!/usr/bin/env bash
# GPU readiness check, on one CUDA GPU in under 5 minutes:
#   1. the GPU (nvidia-smi) and the PyTorch / CUDA versions;
#   2. the CUDA tests: pytest -q -m cuda tests/test_cuda.py (ops, models, streaming, torch.compile against the CPU);
#   3. short training-throughput and streaming benchmarks on CUDA: Memory Mosaic v1 against GPT, v2 against llama.
# Everything lands in ${OUT:-gpu_check_out}: pytest.log, one JSON report per benchmark (throughput_v1.json,
# throughput_v2.json, streaming_v1.json, streaming_v2.json) and each benchmark's own output (<name>.log).
#
#     bash benchmarks/gpu_check.sh                      # from anywhere; uses .venv/bin/python if there, else python
#     OUT=/tmp/gpu bash benchmarks/gpu_check.sh         # elsewhere than ./gpu_check_out
#     GPU_CHECK_COMPILE=1 GPU_CHECK_BUDGET_S=600 bash benchmarks/gpu_check.sh   # throughput under torch.compile too
#                                                       # (slower: each benchmark process compiles both models)
#
# Exits non-zero, saying why, where no CUDA device is usable, when a test or a benchmark fails, or when a step would
# take the whole past its share of the 5-minute budget (each step runs under `timeout`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."  # the repository root
if [[ -x .venv/bin/python ]]; then
    PY=.venv/bin/python
elif command -v python >/dev/null 2>&1; then
    PY=python
else
    PY=python3
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # this working tree's memory_mosaics, installed or not
OUT="${OUT:-gpu_check_out}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-290}"  # the whole script, nvidia-smi and start-up included, stays under 5 minutes

say() { printf '\n=== gpu_check: %s\n' "$*"; }
fail() {
    printf 'gpu_check: FAILED: %s\n' "$*" >&2
    exit 1
}

# Run "$@" under a time limit: its own cap, or what is left of the budget if less.
limited() {
    local cap=$1
    shift
    local left=$((BUDGET_S - SECONDS))
    ((left > 10)) || fail "out of time (${SECONDS}s of ${BUDGET_S}s used) before: $*"
    ((cap < left)) || cap=$left
    timeout --kill-after=5 "$cap" "$@"
}

# ---- 1. the machine ---------------------------------------------------------------------------------------------
say "GPU"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi || echo "gpu_check: nvidia-smi failed (exit $?)"
else
    echo "gpu_check: nvidia-smi not found"
fi

say "PyTorch and CUDA ($PY)"
if ! "$PY" - <<'EOF'; then
import sys

import torch

print(f"python {sys.version.split()[0]}, torch {torch.__version__}, built for CUDA {torch.version.cuda}")
if not torch.cuda.is_available():
    build = "a CPU-only build of PyTorch" if torch.version.cuda is None else f"PyTorch built for CUDA {torch.version.cuda}"
    sys.exit(f"no CUDA device is usable here ({build}, torch.cuda.is_available() is False)")
print(f"cuDNN {torch.backends.cudnn.version()}, {torch.cuda.device_count()} device(s)")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"  cuda:{i} {p.name}, compute capability {p.major}.{p.minor}, {p.total_memory / 2**30:.1f} GiB")
print(f"bf16 supported: {torch.cuda.is_bf16_supported()}")
EOF
    fail "no CUDA GPU usable by $PY: this check needs an NVIDIA GPU, its driver and a CUDA build of PyTorch"
fi
mkdir -p "$OUT"

# ---- 2. the CUDA tests ------------------------------------------------------------------------------------------
say "pytest -q -m cuda tests/test_cuda.py (log: $OUT/pytest.log)"
if ! limited 150 env MM_TEST_DEVICE=cuda "$PY" -m pytest -q -m cuda tests/test_cuda.py 2>&1 | tee "$OUT/pytest.log"; then
    fail "the CUDA tests failed or timed out: see $OUT/pytest.log"
fi

# ---- 3. benchmarks on CUDA --------------------------------------------------------------------------------------
# bench NAME CAP SCRIPT ARGS...: run benchmarks/SCRIPT, its output in $OUT/NAME.log, its JSON report in $OUT/NAME.json
bench() {
    local name=$1 cap=$2 script=$3
    shift 3
    say "$name: benchmarks/$script $*"
    if ! limited "$cap" "$PY" "benchmarks/$script" "$@" >"$OUT/$name.log" 2>&1; then
        tail -n 30 "$OUT/$name.log" >&2 || true
        fail "benchmark $name failed or timed out: see $OUT/$name.log"
    fi
    # the report is the last JSON object printed, the only indented one (the lines before it are one-line progress)
    "$PY" - "$OUT/$name.log" "$OUT/$name.json" <<'EOF' || fail "benchmark $name printed no JSON report: see $OUT/$name.log"
import json
import sys

text = open(sys.argv[1]).read()
report = json.loads(text[text.index("{\n") :])
with open(sys.argv[2], "w") as f:
    json.dump(report, f, indent=2)
print(json.dumps({k: v for k, v in report.items() if k not in ("config",)}, indent=2)[:3000])
EOF
}

SHAPE=(--layers 4 --d 256 --heads 8 --vocab 4096)
COMPILE=() TRAIN_CAP=60
if [[ "${GPU_CHECK_COMPILE:-0}" != 0 ]]; then
    COMPILE=(--compile) TRAIN_CAP=150  # each of the three processes compiles: raise GPU_CHECK_BUDGET_S as well
fi
# training throughput in bf16 autocast (what "auto" precision picks on CUDA): one context, one speed repeat; the
# speed and each model's memory run in fresh processes (three per benchmark)
TRAIN=(--device cuda --dtype bfloat16 --contexts 1024 --batch 8 --steps 5 --warmup 2 --repeats 1 --memory-steps 1)
bench throughput_v1 "$TRAIN_CAP" throughput.py --pair mosaic gpt "${SHAPE[@]}" "${TRAIN[@]}" "${COMPILE[@]}"
bench throughput_v2 "$TRAIN_CAP" throughput.py --pair mosaic2 llama "${SHAPE[@]}" "${TRAIN[@]}" "${COMPILE[@]}" \
    --short-window 256 --long-delay 64
# streaming generation in fp32 (so the report checks that streamed and recomputed greedy tokens agree); v2 with a window
# shorter than the 192 tokens, so that the short-term memory drops pairs
STREAM=(--device cuda --dtype float32 --new-tokens 128 --prompt 64 --repeats 2)
bench streaming_v1 40 streaming.py --pair mosaic gpt "${SHAPE[@]}" "${STREAM[@]}"
bench streaming_v2 40 streaming.py --pair mosaic2 llama "${SHAPE[@]}" "${STREAM[@]}" --short-window 64 --long-delay 16

say "done in ${SECONDS}s: $OUT/ holds pytest.log and throughput_v1, throughput_v2, streaming_v1, streaming_v2 .json"
