import json
from pathlib import Path

import numpy as np
import pytest

from memory_mosaics.train import TrainConfig

VOCAB = 48


def write_dataset(
    directory: Path, vocab: int = VOCAB, n_train: int = 12_000, n_val: int = 2_000, seed: int = 0
) -> Path:
    """A prepared dataset in the shard format: a toy language of repeated random phrases (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    phrases = [rng.integers(1, vocab, size=int(rng.integers(3, 8))) for _ in range(16)]
    directory.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, n in (("train", n_train), ("val", n_val)):
        out: list[int] = []
        while len(out) < n:
            out.extend(phrases[int(rng.integers(0, len(phrases)))].tolist())
            if rng.random() < 0.1:
                out.append(0)  # EOT
        np.asarray(out[:n], dtype="<u2").tofile(directory / f"{split}.bin")
        splits[split] = {"tokens": n, "documents": 0, "sources": ["synthetic"]}
    meta = {
        "format": 1,
        "tokenizer": {"kind": "synthetic", "path": None, "vocab_size": vocab, "eot_id": 0},
        "dtype": "uint16",
        "splits": splits,
    }
    (directory / "meta.json").write_text(json.dumps(meta))
    return directory


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"))


def tiny(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(
        data=str(data),
        out_dir=str(out),
        arch="mosaic",
        n_layer=2,
        n_head=2,
        n_embd=32,
        block_size=32,
        batch_size=8,
        micro_batch_size=4,
        max_iters=8,
        lr=3e-3,
        min_lr=1e-4,
        warmup_iters=2,
        eval_interval=4,
        eval_batches=2,
        log_interval=1,
        ckpt_interval=4,
        keep_last=2,
        progress=False,
        tensorboard=False,
        device="cpu",
        dropout=0.1,
        threads=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def train_losses(records: list[dict]) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: one thread is fastest, and far faster than two on a shared machine (no OpenMP barriers)."""
