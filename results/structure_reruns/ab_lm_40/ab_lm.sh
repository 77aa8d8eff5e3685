#!/usr/bin/env bash
# A/B of the LM trainer: the code before the structure change (5ee7f6a, checked out with
# `git worktree add /tmp/oldmain 5ee7f6a`) and after it, the same flags on the same machine; compare.py compares them.
set -e
cd /work/main
DATA=runs/accept/data_bpe4k
for arch in mosaic gpt; do
  for side in old new; do
    if [ $side = old ]; then PP=/tmp/oldmain/src; else PP=/work/main/src; fi
    rm -rf runs/ab/$side/$arch
    PYTHONPATH=$PP TORCH_EXTENSIONS_DIR=/tmp/ext_$side .venv/bin/python -m memory_mosaics.cli train --arch $arch --data $DATA \
      --out-dir runs/ab/$side/$arch --n-layer 4 --n-head 4 --n-embd 128 --block-size 256 --batch-size 16 --max-iters 40 \
      --lr 3e-3 --min-lr 1e-4 --warmup-iters 4 --weight-decay 0.1 --dropout 0.05 --grad-clip 1.0 --seed 1337 \
      --eval-interval 20 --eval-batches 0 --log-interval 5 --ckpt-interval 20 --keep-last 2 --device cpu --threads 1 \
      --no-progress > runs/ab/$side-$arch.log 2>&1
  done
done
