"""Tokenizers: round trips of the corpus-trained BPE and (where its files exist) GPT-2, offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from memory_mosaics.data import BPETokenizer, GPT2Tokenizer, TokenizerError, load_tokenizer
from memory_mosaics.data.tokenizer import EOT, find_gpt2_dir

TEXTS = ["Once upon a time, Zoë saw a 🐉 — «voilà»!", "  leading spaces\n\n\ttabs\r\n", "日本語のテキスト", ""]


def test_bpe_round_trip_and_save(tmp_path: Path, stories: list[str]) -> None:
    tok = BPETokenizer.train(stories, vocab_size=300, show_progress=False)
    assert tok.vocab_size == 300 and tok.eot_id == 0
    for text in [*stories[:5], *TEXTS]:  # bytes never seen in training still round-trip (byte-level alphabet)
        ids = tok.encode(text)
        assert all(0 <= i < 300 for i in ids)
        assert tok.decode(ids) == text
    assert tok.encode(f"a{EOT}b")[1] == tok.eot_id
    assert len(tok.encode(stories[0])) < 0.7 * len(stories[0].encode())  # it learned merges
    tok.save(tmp_path / "tokenizer.json")
    again = BPETokenizer.load(tmp_path / "tokenizer.json")
    assert again.encode(TEXTS[0]) == tok.encode(TEXTS[0])
    assert tok.encode_batch(TEXTS) == [tok.encode(t) for t in TEXTS]


def test_bpe_refuses(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match=r"vocab_size >= 257"):
        BPETokenizer.train(["abc"], vocab_size=100)
    with pytest.raises(TokenizerError, match=r"does not exist"):
        BPETokenizer.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(TokenizerError, match=r"cannot load tokenizer .*bad.json"):
        BPETokenizer.load(tmp_path / "bad.json")


def test_load_tokenizer_checks_meta(tmp_path: Path, stories: list[str]) -> None:
    BPETokenizer.train(stories, vocab_size=300, show_progress=False).save(tmp_path / "tokenizer.json")
    meta = {"format": 1, "dtype": "uint16", "splits": {},
            "tokenizer": {"kind": "bpe", "path": "tokenizer.json", "vocab_size": 300, "eot_id": 0}}  # fmt: skip
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    assert load_tokenizer(tmp_path).vocab_size == 300
    meta["tokenizer"]["vocab_size"] = 512
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(TokenizerError, match=r"says vocab_size 512 but the bpe tokenizer has 300"):
        load_tokenizer(tmp_path)
    with pytest.raises(TokenizerError, match=r"unknown tokenizer kind 'wordpiece'"):
        load_tokenizer({**meta, "tokenizer": {"kind": "wordpiece"}})


def _gpt2_dir() -> Path:
    d = find_gpt2_dir()
    if d is None or not (d / "encoder.json").is_file() or not (d / "vocab.bpe").is_file():
        pytest.skip("GPT-2 tokenizer files not found (set MOSAIC_GPT2_DIR)")
    return d


def test_gpt2_from_cache_and_from_files(tmp_path: Path) -> None:
    d = _gpt2_dir()
    files = tmp_path / "files"  # encoder.json + vocab.bpe only: built directly, no tiktoken cache involved
    files.mkdir()
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(d / name, files / name)
    for source in (d, files):
        tok = GPT2Tokenizer(source)
        assert tok.encode("Hello world") == [15496, 995]
        assert (tok.vocab_size, tok.eot_id) == (50257, 50256)
        assert tok.encode(f"Hi{EOT}") == [17250, 50256]
        assert tok.encode_batch([f"Hi{EOT}"]) == [tok.encode_ordinary(f"Hi{EOT}")]  # documents: EOT is plain text
        for text in TEXTS:
            assert tok.decode(tok.encode(text)) == text
    assert sorted(p.name for p in files.iterdir()) == ["encoder.json", "vocab.bpe"]  # nothing written beside them


def test_gpt2_refuses_wrong_files(tmp_path: Path) -> None:
    """Needs no real GPT-2 files: each file is hash-checked before tiktoken reads it."""
    (tmp_path / "encoder.json").write_text("{}")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\n")
    with pytest.raises(TokenizerError, match=r"encoder.json is not the genuine GPT-2 file"):
        GPT2Tokenizer(tmp_path)
    d = find_gpt2_dir()
    if d is not None and (d / "encoder.json").is_file():  # a genuine encoder.json: then vocab.bpe is checked too
        shutil.copy(d / "encoder.json", tmp_path / "encoder.json")
        with pytest.raises(TokenizerError, match=r"vocab.bpe is not the genuine GPT-2 file"):
            GPT2Tokenizer(tmp_path)
    with pytest.raises(TokenizerError, match=r"does not exist"):
        GPT2Tokenizer(tmp_path / "nowhere")
