"""``mosaic convert`` output loads with AutoModelForCausalLM and AutoTokenizer offline: GPT-2's tokenizer (the authors'
checkpoints) or a prepared dataset's BPE (``--data``). The authors' code is v1 only: there is nothing of v2 or llama to
convert."""

import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from transformers import AutoModelForCausalLM, AutoTokenizer

import memory_mosaics.hf  # noqa: F401  (registers the Auto classes)
from memory_mosaics.cli import main
from memory_mosaics.data.tokenizer import BPETokenizer, GPT2Tokenizer, find_gpt2_dir

_spec = importlib.util.spec_from_file_location("_convert_helpers", Path(__file__).parents[1] / "data/test_convert.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)  # the authors' checkpoint layout, as tests/data writes it


@pytest.mark.skipif(find_gpt2_dir() is None, reason="GPT-2 tokenizer files not found (../shared/data/gpt2_tokenizer)")
def test_converted_folder_is_a_hf_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = {**helpers.ARGS, "n_layer": 1, "vocab_size": 50304}  # the authors' padded GPT-2 vocabulary
    path = helpers.save_ckpt(tmp_path / "ckpt.pt", helpers.make_state_dict(args), args)
    assert main(["convert", str(path), "--out", str(tmp_path / "out")]) == 0
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    ours = GPT2Tokenizer()
    text = "Once upon a time, there was a little girl.<|endoftext|>"
    assert tok(text)["input_ids"] == ours.encode(text) and tok.eos_token_id == ours.eot_id
    ids = torch.tensor([ours.encode("Once upon a time")])
    with torch.no_grad():
        assert hf(ids).logits.shape == (1, ids.shape[1], 50304)


def test_converted_folder_with_a_bpe_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--data: the dataset's BPE goes beside the weights; transformers' logits are the authors' (their own math)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text = "Lily had a ball. Lily gave the ball to Tom.\n<|endoftext|>\n" * 40
    (tmp_path / "train.txt").write_text(text)
    prepare = ["prepare", "--input", str(tmp_path / "train.txt"), "--val-fraction", "0.1", "--tokenizer", "bpe"]
    assert main([*prepare, "--vocab-size", "300", "--out", str(tmp_path / "data"), "--no-progress"]) == 0
    tok = BPETokenizer.load(tmp_path / "data" / "tokenizer.json")
    args = {**helpers.ARGS, "n_layer": 1, "vocab_size": tok.vocab_size}
    sd = helpers.make_state_dict(args)
    path = helpers.save_ckpt(tmp_path / "ckpt.pt", sd, args)
    out = tmp_path / "out"
    assert main(["convert", str(path), "--data", str(tmp_path / "data"), "--out", str(out)]) == 0
    hf = AutoModelForCausalLM.from_pretrained(out)
    hf_tok = AutoTokenizer.from_pretrained(out)
    prompt = "Lily gave the ball to"
    assert hf_tok(prompt)["input_ids"] == tok.encode(prompt) and hf_tok.eos_token_id == tok.eot_id
    ids = torch.tensor([tok.encode(prompt)])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, helpers.authors_logits(sd, args, ids), rtol=1e-4, atol=1e-4)
    assert f"mosaic: 1 blocks, d 32, 4 heads, vocab {tok.vocab_size}" in (out / "README.md").read_text()  # its card
