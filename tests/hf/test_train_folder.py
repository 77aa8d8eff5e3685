"""A checkpoint that ``mosaic train`` wrote is a Hugging Face folder: model, tokenizer, model card."""

import argparse
import random
import shlex
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

import memory_mosaics.hf  # noqa: F401  (registers the Auto classes)
from memory_mosaics.checkpoints import list_checkpoints, load_checkpoint, load_trainer_state
from memory_mosaics.cli import main
from memory_mosaics.cli.train import add_arguments
from memory_mosaics.data.tokenizer import find_gpt2_dir, load_tokenizer
from memory_mosaics.generate import generate


def _stories(n: int, seed: int) -> str:
    rng = random.Random(seed)
    names, things = ["Lily", "Tom", "Mia", "Ben"], ["ball", "cat", "kite", "cake"]
    out = []
    for _ in range(n):
        a, b, t = rng.choice(names), rng.choice(names), rng.choice(things)
        out.append(f"{a} had a {t}. {a} gave the {t} to {b}.")
    return "\n<|endoftext|>\n".join(out) + "\n<|endoftext|>\n"


GPT2 = pytest.mark.skipif(find_gpt2_dir() is None, reason="GPT-2 tokenizer files not found (../shared/data)")
CASES = [("mosaic", "bpe"), ("mosaic2", "bpe"), pytest.param("gpt", "gpt2", marks=GPT2)]
CASES += [pytest.param("llama", "gpt2", marks=GPT2)]


@pytest.mark.parametrize(("arch", "tokenizer"), CASES)
def test_mosaic_train_checkpoint_loads_with_auto_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arch: str, tokenizer: str
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "train.txt").write_text(_stories(200, 0))
    (tmp_path / "valid.txt").write_text(_stories(30, 1))
    data, run = tmp_path / "data", tmp_path / "run"
    prepare = ["prepare", "--input", str(tmp_path / "train.txt"), "--val", str(tmp_path / "valid.txt")]
    vocab = ["--vocab-size", "300"] if tokenizer == "bpe" else []
    assert main([*prepare, "--tokenizer", tokenizer, *vocab, "--out", str(data), "--no-progress"]) == 0
    train = ["train", "--data", str(data), "--out-dir", str(run), "--arch", arch, "--n-layer", "1", "--n-head", "2"]
    train += ["--n-embd", "32", "--block-size", "32", "--batch-size", "4", "--max-iters", "2", "--warmup-iters", "1"]
    train += ["--eval-interval", "2", "--eval-batches", "1", "--ckpt-interval", "2", "--no-progress"]
    assert main([*train, "--no-tensorboard", "--device", "cpu"]) == 0
    ckpt = list_checkpoints(run)[-1]
    _, ours, meta = load_checkpoint(ckpt, device="cpu")
    tok = load_tokenizer(meta)
    assert meta["tokenizer"]["kind"] == tokenizer
    hf = AutoModelForCausalLM.from_pretrained(ckpt)
    hf_tok = AutoTokenizer.from_pretrained(ckpt)
    assert isinstance(hf_tok, PreTrainedTokenizerFast) and hf_tok.eos_token_id == tok.eot_id
    for text in ("Lily had a", "Tom gave the kite to Mia.\n<|endoftext|>\nBen"):
        assert hf_tok(text)["input_ids"] == tok.encode(text)
        assert hf_tok.decode(tok.encode(text)) == text
    prompt = "Lily had a"
    ids = hf_tok(prompt, return_tensors="pt")
    out = hf.generate(**ids, max_new_tokens=5, do_sample=False, eos_token_id=None)
    assert torch.equal(out, generate(ours, ids["input_ids"], 5, greedy=True))
    hf_tok.padding_side = "left"  # a batch of prompts, padded by the tokenizer: each row as if alone
    prompts = ["Lily had a", "Ben gave the cake to"]
    batch = hf_tok(prompts, return_tensors="pt", padding=True)
    out = hf.generate(**batch, max_new_tokens=4, do_sample=False, eos_token_id=None)
    for row, text in zip(out, prompts, strict=True):
        alone = torch.tensor([tok.encode(text)])
        assert torch.equal(row[-4:], generate(ours, alone, 4, greedy=True)[0, -4:]), text

    card = (ckpt / "README.md").read_text()
    params = f"{ours.num_params(non_embedding=False):,}"
    assert f"{arch}: 1 blocks, d 32" in card and f"| parameters | {params} (" in card
    assert "train.txt" in card and f"tokenizer {tokenizer}" in card and "| training steps | 2 (" in card
    assert "| validation loss | " in card and " at step 2 |" in card
    (command,) = [line.split("`")[1] for line in card.splitlines() if line.startswith("| command | `")]
    assert command.startswith("mosaic train ")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    again = vars(parser.parse_args(shlex.split(command)[2:]))  # the card's command gives the same configuration
    trained = load_trainer_state(ckpt)["train"]
    assert {k: v for k, v in again.items() if k != "resume"} == {k: v for k, v in trained.items() if k != "resume"}
