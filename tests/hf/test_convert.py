"""``mosaic convert`` output loads with AutoModelForCausalLM and AutoTokenizer (GPT-2's tokenizer, offline)."""

import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from transformers import AutoModelForCausalLM, AutoTokenizer

import memory_mosaics.hf  # noqa: F401  (registers the Auto classes)
from memory_mosaics.cli import main
from memory_mosaics.data.tokenizer import GPT2Tokenizer, find_gpt2_dir

_spec = importlib.util.spec_from_file_location("_convert_helpers", Path(__file__).parents[1] / "data/test_convert.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)  # the authors' checkpoint layout, as tests/data writes it


@pytest.mark.skipif(find_gpt2_dir() is None, reason="GPT-2 tokenizer files not found (../shared/data/gpt2_tokenizer)")
def test_converted_folder_is_a_hf_folder(tmp_path: Path) -> None:
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
