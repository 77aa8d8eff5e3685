"""`mosaic prepare`: corpora -> token shards, on small made-up corpora (BPE tokenizer; GPT-2 where its files exist)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from memory_mosaics.cli import main
from memory_mosaics.data import CorpusError, ShardError, TokenShard, load_tokenizer, sources
from memory_mosaics.data.prepare import PrepareOptions, prepare
from memory_mosaics.data.shards import dtype_for_vocab
from memory_mosaics.data.tokenizer import find_gpt2_dir

VOCAB = 300


def bpe(out: Path, inputs: list[Path], **kw: object) -> dict:
    return prepare(PrepareOptions(out=out, inputs=[str(p) for p in inputs], tokenizer="bpe", vocab_size=VOCAB,
                                  progress=False, **kw))  # fmt: skip


def documents(shard: TokenShard) -> list[list[int]]:
    """Split a shard back into documents at the EOT ids (each document is followed by one)."""
    ids = shard.tokens.tolist()
    assert ids[-1] == shard.eot_id
    docs, cur = [], []
    for t in ids:
        if t == shard.eot_id:
            docs.append(cur)
            cur = []
        else:
            cur.append(t)
    return docs


def test_prepare_small_corpus(tmp_path: Path, corpus: Path, stories: list[str]) -> None:
    val = tmp_path / "val.txt"
    val.write_text("Lily saw a boat.\n<|endoftext|>\nBen lost a kite.", encoding="utf-8")
    meta = bpe(tmp_path / "out", [corpus], val_inputs=[str(val)])
    assert meta["tokenizer"] == {"kind": "bpe", "path": "tokenizer.json", "vocab_size": VOCAB, "eot_id": 0}
    assert meta["dtype"] == "uint16"
    assert meta["splits"]["train"]["documents"] == len(stories)
    assert meta["splits"]["val"]["documents"] == 2
    src = meta["splits"]["train"]["sources"][0]
    assert src["bytes"] == corpus.stat().st_size and len(src["sha256"]) == 64
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["splits"]["train"]["tokens"] > 0

    train = TokenShard.open(tmp_path / "out", "train")
    assert train.tokens.dtype == np.uint16 and not train.tokens.flags.writeable
    assert len(train) == meta["splits"]["train"]["tokens"] and train.vocab_size == VOCAB
    tok = load_tokenizer(tmp_path / "out")
    assert [tok.decode(d) for d in documents(train)] == stories  # exact, in order, one EOT after each
    assert [tok.decode(d) for d in documents(TokenShard.open(tmp_path / "out", "val"))] == [
        "Lily saw a boat.",
        "Ben lost a kite.",
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "meta.json",
        "tokenizer.json",
        "train.bin",
        "val.bin",
    ]


def test_prepare_is_deterministic(tmp_path: Path, corpus: Path) -> None:
    for name in ("a", "b"):
        bpe(tmp_path / name, [corpus], val_fraction=0.1)
    for f in ("meta.json", "tokenizer.json", "train.bin", "val.bin"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_val_fraction_carves_whole_documents(tmp_path: Path, corpus: Path, stories: list[str]) -> None:
    meta = bpe(tmp_path / "out", [corpus], val_fraction=0.1)
    assert meta["splits"]["val"]["documents"] == 6 and meta["splits"]["train"]["documents"] == 54
    tok = load_tokenizer(tmp_path / "out")
    val = [tok.decode(d) for d in documents(TokenShard.open(tmp_path / "out", "val"))]
    assert val == [stories[i] for i in range(9, 60, 10)]
    with pytest.raises(CorpusError, match=r"val split has no documents"):
        bpe(tmp_path / "few", [corpus], val_fraction=0.01)


def test_separators_and_formats(tmp_path: Path, stories: list[str]) -> None:
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n  \n".join(s.replace("\n", " ") for s in stories[:10]) + "\n", encoding="utf-8")
    nul = tmp_path / "nul.txt"
    nul.write_text("\x00".join(stories[:10]), encoding="utf-8")
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(s.replace("\n", " ") for s in stories[:10]), encoding="utf-8")
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": s, "id": i}) for i, s in enumerate(stories[:10])), encoding="utf-8")
    babi = tmp_path / "babi.txt"  # BabiStories: one JSON string per line
    babi.write_text("".join(json.dumps(s) + "\n" for s in stories[:10]), encoding="utf-8")
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(("\r\n<|endoftext|>\r\n".join(stories[:10])).replace("\n", "\r\n").encode())

    def docs(path: Path, **kw: object) -> list[str]:
        bpe(tmp_path / "out", [path], **kw)
        tok = load_tokenizer(tmp_path / "out")
        return [tok.decode(d) for d in documents(TokenShard.open(tmp_path / "out", "train"))]

    flat = [s.replace("\n", " ") for s in stories[:10]]
    assert docs(blank, separator="blank-line") == flat
    assert docs(nul, separator="\\x00") == stories[:10]
    assert docs(lines, separator="line") == flat
    assert docs(lines, separator="file") == ["\n".join(flat)]
    assert docs(jsonl) == stories[:10]
    assert docs(babi, fmt="jsonl") == stories[:10]
    assert docs(crlf) == stories[:10]
    # a directory of them, read in sorted order
    d = tmp_path / "dir"
    (d / "sub").mkdir(parents=True)
    (d / "b.txt").write_text("second", encoding="utf-8")
    (d / "sub" / "a.jsonl").write_text('{"text": "third"}\n', encoding="utf-8")
    (d / "a.txt").write_text("first<|endoftext|>", encoding="utf-8")
    assert docs(d) == ["first", "second", "third"]


def test_long_documents_stream_in_pieces_with_identical_ids(
    tmp_path: Path, stories: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    long = tmp_path / "long.txt"
    long.write_text("\n".join(stories) + "\n<|endoftext|>\n" + "\n\n".join(stories), encoding="utf-8")
    bpe(tmp_path / "whole", [long])
    monkeypatch.setattr(sources, "BLOCK", 64)  # tiny reads and pieces: a document spans many of them
    monkeypatch.setattr(sources, "MAX_PIECE", 200)
    pieces = list(sources.split_documents(sources.read_text_blocks(long, sources.SourceInfo("x")), "<|endoftext|>"))
    assert sum(not p.end for p in pieces) > 20
    bpe(tmp_path / "pieces", [long])
    for f in ("tokenizer.json", "train.bin", "meta.json"):
        assert (tmp_path / "whole" / f).read_bytes() == (tmp_path / "pieces" / f).read_bytes()


@pytest.mark.parametrize("separator", ["<|endoftext|>", "blank-line", "\\n--\\n"])
def test_splitter_across_block_boundaries(separator: str, stories: list[str]) -> None:
    sep = {"blank-line": "\n \n\n", "\\n--\\n": "\n--\n"}.get(separator, "<|endoftext|>")
    text = sep.join(s.replace("\n\n", "\n") for s in stories)
    expected = [s.replace("\n\n", "\n").strip() for s in stories]
    for size in (1, 3, 7, 50):
        blocks = [text[i : i + size] for i in range(0, len(text), size)]
        got = "".join(
            p.text + ("\0" if p.end else "")
            for p in sources.split_documents(blocks, sources.decode_separator(separator))
        )
        assert got.split("\0")[:-1] == expected, size


def test_gpt2_prepare(tmp_path: Path, corpus: Path, stories: list[str]) -> None:
    d = find_gpt2_dir()
    if d is None or not (d / "encoder.json").is_file():
        pytest.skip("GPT-2 tokenizer files not found (set MOSAIC_GPT2_DIR)")
    meta = prepare(PrepareOptions(out=tmp_path / "out", inputs=[str(corpus)], gpt2_dir=str(d), progress=False))
    assert meta["tokenizer"] == {"kind": "gpt2", "path": None, "vocab_size": 50257, "eot_id": 50256}
    shard = TokenShard.open(tmp_path / "out", "train")
    tok = load_tokenizer(tmp_path / "out", gpt2_dir=d)
    assert [tok.decode(x) for x in documents(shard)] == stories
    assert shard.tokens[:5].tolist() == tok.encode(stories[0])[:5]


# ---- bad input -------------------------------------------------------------------------------------------------------
def test_bad_inputs_name_the_file(tmp_path: Path, corpus: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n<|endoftext|>\n\n", encoding="utf-8")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes(b"Once upon a time\n" * 3 + "café au lait".encode("latin-1"))
    badjson = tmp_path / "bad.jsonl"
    badjson.write_text('{"text": "ok"}\n{"text": oops}\n', encoding="utf-8")
    nofield = tmp_path / "nofield.jsonl"
    nofield.write_text('{"story": "ok"}\n', encoding="utf-8")
    cases = [
        (tmp_path / "missing.txt", "missing.txt: no such file"),
        (empty, "empty.txt: the file is empty"),
        (blank, "blank.txt: contains no documents"),
        (latin, "latin1.txt: not valid UTF-8 at byte 54"),
        (badjson, "bad.jsonl:2: not valid JSON"),
        (nofield, "nofield.jsonl:1: no field 'text'"),
    ]
    for path, message in cases:
        with pytest.raises(CorpusError, match=message):
            bpe(tmp_path / "out", [path])
        assert not (tmp_path / "out").exists()
    d = find_gpt2_dir()
    if d is not None and (d / "encoder.json").is_file():  # gpt2 fails while tokenizing, after creating --out
        with pytest.raises(CorpusError, match=r"latin1.txt: not valid UTF-8"):
            prepare(PrepareOptions(out=tmp_path / "out", inputs=[str(latin)], gpt2_dir=str(d), progress=False))
        assert not (tmp_path / "out").exists()


def test_vocabulary_larger_than_the_dtype(tmp_path: Path, corpus: Path) -> None:
    with pytest.raises(ShardError, match=r"70000 tokens, more than a uint16 shard can hold"):
        prepare(PrepareOptions(out=tmp_path / "o", inputs=[str(corpus)], tokenizer="bpe", vocab_size=70000,
                               dtype="uint16", progress=False))  # fmt: skip
    assert dtype_for_vocab(65536) == "uint16" and dtype_for_vocab(65537) == "uint32"
    assert dtype_for_vocab(65536, "uint16") == "uint16" and dtype_for_vocab(300, "uint32") == "uint32"
    with pytest.raises(ShardError, match=r"the trained BPE has 65537 tokens, more than a uint16 shard can hold"):
        dtype_for_vocab(65537, "uint16", "the trained BPE")


def test_failure_never_overwrites_a_good_shard(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "out"
    bpe(out, [corpus], val_fraction=0.1)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad.txt"
    bad.write_bytes(corpus.read_bytes() + b"\xff\xfe trailing garbage")  # fails at the very end of tokenizing
    with pytest.raises(CorpusError, match=r"bad.txt: not valid UTF-8"):
        bpe(out, [corpus, bad], val_fraction=0.1)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temp files left either
    # and a successful re-run replaces it consistently
    bpe(out, [corpus], val_fraction=0.2)
    assert TokenShard.open(out, "val").documents == 12


def test_token_shard_errors(tmp_path: Path, corpus: Path) -> None:
    with pytest.raises(ShardError, match=r"does not exist"):
        TokenShard.open(tmp_path / "nowhere", "train")
    (tmp_path / "nometa").mkdir()
    with pytest.raises(ShardError, match=r"has no meta.json"):
        TokenShard.open(tmp_path / "nometa", "train")
    out = tmp_path / "out"
    bpe(out, [corpus])
    with pytest.raises(ShardError, match=r"no split 'val' \(it has: train\)"):
        TokenShard.open(out, "val")
    data = (out / "train.bin").read_bytes()
    (out / "train.bin").write_bytes(data[:-2])
    with pytest.raises(ShardError, match=r"train.bin has \d+ bytes but meta.json says \d+ uint16 tokens"):
        TokenShard.open(out, "train")
    (out / "train.bin").unlink()
    with pytest.raises(ShardError, match=r"train.bin is missing"):
        TokenShard.open(out, "train")
    (out / "meta.json").write_text("{not json")
    with pytest.raises(ShardError, match=r"cannot read .*meta.json"):
        TokenShard.open(out, "train")


def test_cli(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = ["prepare", "--input", str(corpus), "--tokenizer", "bpe", "--vocab-size", "300", "--out", str(out)]
    assert main([*args, "--val-fraction", "0.1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "train:" in printed and "val:" in printed
    assert main(["prepare", "--input", str(tmp_path / "nope.txt"), "--out", str(out)]) == 1
    assert "nope.txt: no such file" in capsys.readouterr().err
    assert main([*args[:-2], "--dtype", "uint16", "--vocab-size", "70000", "--out", str(out)]) == 1


def test_hf_dataset(tmp_path: Path, stories: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def load_dataset(name: str, config: str | None, split: str, streaming: bool) -> list[dict]:
        calls.append((name, config, split, streaming))
        return [{"text": s} for s in (stories if split == "train" else stories[:3])]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    meta = prepare(PrepareOptions(out=tmp_path / "out", hf_dataset="tinystories", hf_val_split="validation",
                                  tokenizer="bpe", vocab_size=VOCAB, progress=False))  # fmt: skip
    assert calls == [("roneneldan/TinyStories", None, "train", True)] * 2 + [
        ("roneneldan/TinyStories", None, "validation", True)
    ]
    assert meta["splits"]["val"]["documents"] == 3
    assert meta["splits"]["train"]["sources"][0]["path"] == "hf://tinystories//train"
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(CorpusError, match=r"needs the optional dependency `datasets`"):
        prepare(PrepareOptions(out=tmp_path / "o2", hf_dataset="tinystories", progress=False))


def test_read_utf8_reads_a_file_as_prepare_does(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_bytes("\ufeffone\r\ntwo\rthree".encode())
    assert sources.read_utf8(good) == "one\ntwo\nthree"  # no byte-order mark, newlines normalised
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine \xff")
    with pytest.raises(CorpusError, match=r"bad\.txt: not valid UTF-8 at byte 5"):
        sources.read_utf8(bad)
