"""A checkpoint that ``mosaic train`` wrote is a Hugging Face folder: model, tokenizer, model card."""

import random
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from transformers import AutoModelForCausalLM, AutoTokenizer

import memory_mosaics.hf  # noqa: F401  (registers the Auto classes)
from memory_mosaics.checkpoints import list_checkpoints, load_checkpoint
from memory_mosaics.cli import main
from memory_mosaics.data.tokenizer import load_tokenizer
from memory_mosaics.generate import generate


def _stories(n: int, seed: int) -> str:
    rng = random.Random(seed)
    names, things = ["Lily", "Tom", "Mia", "Ben"], ["ball", "cat", "kite", "cake"]
    out = []
    for _ in range(n):
        a, b, t = rng.choice(names), rng.choice(names), rng.choice(things)
        out.append(f"{a} had a {t}. {a} gave the {t} to {b}.")
    return "\n<|endoftext|>\n".join(out) + "\n<|endoftext|>\n"


@pytest.mark.parametrize("arch", ["mosaic2"])
def test_mosaic_train_checkpoint_loads_with_auto_classes(tmp_path: Path, arch: str) -> None:
    (tmp_path / "train.txt").write_text(_stories(200, 0))
    (tmp_path / "valid.txt").write_text(_stories(30, 1))
    data, run = tmp_path / "data", tmp_path / "run"
    prepare = ["prepare", "--input", str(tmp_path / "train.txt"), "--val", str(tmp_path / "valid.txt")]
    assert main([*prepare, "--tokenizer", "bpe", "--vocab-size", "300", "--out", str(data), "--no-progress"]) == 0
    train = ["train", "--data", str(data), "--out-dir", str(run), "--arch", arch, "--n-layer", "1", "--n-head", "2"]
    train += ["--n-embd", "32", "--block-size", "32", "--batch-size", "4", "--max-iters", "2", "--warmup-iters", "1"]
    train += ["--eval-interval", "2", "--eval-batches", "1", "--ckpt-interval", "2", "--no-progress"]
    assert main([*train, "--no-tensorboard", "--device", "cpu"]) == 0
    ckpt = list_checkpoints(run)[-1]
    _, ours, meta = load_checkpoint(ckpt, device="cpu")
    tok = load_tokenizer(meta)
    hf = AutoModelForCausalLM.from_pretrained(ckpt)
    hf_tok = AutoTokenizer.from_pretrained(ckpt)
    prompt = "Lily had a"
    assert hf_tok(prompt)["input_ids"] == tok.encode(prompt)
    ids = hf_tok(prompt, return_tensors="pt")
    out = hf.generate(**ids, max_new_tokens=5, do_sample=False, eos_token_id=None)
    assert torch.equal(out, generate(ours, ids["input_ids"], 5, greedy=True))
    card = (ckpt / "README.md").read_text()
    assert f"{arch}: 1 blocks, d 32" in card and "at step 2" in card and "train.txt" in card
