"""Text in, text out: the decoding settings, completion of a prompt, and prompt files."""

import json
from pathlib import Path

import pytest
import torch

from memory_mosaics import MemoryMosaic, MosaicConfig
from memory_mosaics.completion import Decoding, complete, read_prompts


class Chars:
    """A tokenizer of the letters a-z, with 26 as the end-of-text token."""

    vocab_size, eot_id = 27, 26

    def encode(self, text: str) -> list[int]:
        return [ord(c) - 97 for c in text if "a" <= c <= "z"]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(97 + i) for i in ids if i < 26)


def test_decoding_refuses_settings_that_mean_nothing() -> None:
    with pytest.raises(ValueError, match="mode"):
        Decoding(mode="nucleus")
    with pytest.raises(ValueError, match="top_p"):
        Decoding(mode="sample", top_p=0)
    Decoding(mode="beam", top_p=0)  # sampling settings are not read by beam search


@pytest.mark.parametrize("mode", ["greedy", "sample", "beam"])
def test_complete_returns_only_the_new_text(mode: str) -> None:
    torch.manual_seed(0)
    model = MemoryMosaic(MosaicConfig(vocab_size=27, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    text = complete(model, Chars(), "abc", Decoding(mode=mode, max_new_tokens=5, stop_at_eot=False))
    assert len(text) <= 5 and set(text) <= set("abcdefghijklmnopqrstuvwxyz")
    again = complete(model, Chars(), "abc", Decoding(mode=mode, max_new_tokens=5, stop_at_eot=False))
    assert again == text  # seeded sampling is reproducible
    with pytest.raises(ValueError, match="encodes to no tokens"):
        complete(model, Chars(), "123", Decoding(mode=mode))


def test_read_prompts(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "once", "id": 3}) + "\n\n" + json.dumps("upon") + "\n")
    assert read_prompts(path) == [{"prompt": "once", "id": 3}, {"prompt": "upon"}]
    path.write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:1 has no string field 'prompt'"):
        read_prompts(path)
    path.write_text("{oops\n")
    with pytest.raises(ValueError, match=r"p.jsonl:1 is not JSON"):
        read_prompts(path)
    with pytest.raises(FileNotFoundError, match="no prompts file"):
        read_prompts(tmp_path / "missing.jsonl")
