"""Corpora -> token shards (``mosaic prepare``): stream documents, tokenize, write ``<split>.bin`` and ``meta.json``.

Deterministic: the same inputs and options give byte-identical outputs (no timestamps, fixed document order, a
validation carve-out chosen by document index). Nothing is written under a final name before every split has been
tokenized without error, so a failed run never damages a good dataset.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from memory_mosaics import __version__
from memory_mosaics.data.shards import FORMAT, ShardWriter, dtype_for_vocab, write_meta
from memory_mosaics.data.sources import (
    CorpusError,
    Piece,
    SourceInfo,
    decode_separator,
    expand_inputs,
    file_documents,
    hf_documents,
    require_datasets,
)
from memory_mosaics.data.tokenizer import BPE_FILE, EOT, GPT2_VOCAB, BPETokenizer, GPT2Tokenizer

BATCH_CHARS = 1 << 20  # text handed to the tokenizer at once (it parallelises within a batch)


@dataclass
class PrepareOptions:
    out: Path
    inputs: list[str] = field(default_factory=list)
    val_inputs: list[str] = field(default_factory=list)
    val_fraction: float = 0.0
    hf_dataset: str | None = None
    hf_config: str | None = None
    hf_split: str = "train"
    hf_val_split: str | None = None
    separator: str = EOT
    fmt: str = "auto"
    text_field: str = "text"
    tokenizer: str = "gpt2"
    vocab_size: int | None = None
    gpt2_dir: str | None = None
    dtype: str = "auto"
    progress: bool = True


@dataclass
class _Source:
    """A file or a Hugging Face split, read lazily (twice when a BPE is trained on it)."""

    label: str
    path: Path | None = None
    hf: tuple[str, str | None, str] | None = None
    size: int | None = None

    def open(self, opts: PrepareOptions, separator: str) -> tuple[Iterator[Piece], SourceInfo]:
        info = SourceInfo(self.label)
        if self.hf is not None:
            return hf_documents(*self.hf, info=info, text_field=opts.text_field), info
        assert self.path is not None
        return file_documents(self.path, info, separator, opts.fmt, opts.text_field), info


def _file_sources(paths: list[str]) -> list[_Source]:
    out = []
    for p in expand_inputs(paths):
        size = p.stat().st_size
        if size == 0:
            raise CorpusError(f"{p}: the file is empty")
        out.append(_Source(str(p.resolve()), path=p, size=size))
    return out


def _plan(opts: PrepareOptions) -> tuple[list[_Source], list[_Source]]:
    """(train sources, val sources); val sources are empty when validation is carved out of train by fraction."""
    if not 0.0 <= opts.val_fraction < 1.0:
        raise CorpusError(f"--val-fraction must be in [0, 1), got {opts.val_fraction}")
    if opts.hf_dataset:
        if opts.inputs:
            raise CorpusError("give either --input files or --hf-dataset, not both")
        name = opts.hf_dataset
        require_datasets(name)  # fail before loading a tokenizer
        train = [
            _Source(f"hf://{name}/{opts.hf_config or ''}/{opts.hf_split}", hf=(name, opts.hf_config, opts.hf_split))
        ]
        val = []
        if opts.hf_val_split:
            label = f"hf://{name}/{opts.hf_config or ''}/{opts.hf_val_split}"
            val = [_Source(label, hf=(name, opts.hf_config, opts.hf_val_split))]
        elif opts.val_inputs:
            val = _file_sources(opts.val_inputs)
        return train, val
    if not opts.inputs:
        raise CorpusError("no corpus given: use --input PATH (repeatable) or --hf-dataset NAME")
    return _file_sources(opts.inputs), _file_sources(opts.val_inputs) if opts.val_inputs else []


def _in_val(index: int, fraction: float) -> bool:
    """Every 1/fraction-th document, evenly spread and independent of anything but the index."""
    return fraction > 0 and math.floor((index + 1) * fraction) > math.floor(index * fraction)


def _pieces(
    sources: list[_Source], opts: PrepareOptions, separator: str, infos: list[SourceInfo]
) -> Iterator[tuple[Piece, int]]:
    """Every piece of every source, with the global index of its document."""
    index = 0
    for src in sources:
        pieces, info = src.open(opts, separator)
        infos.append(info)
        for piece in pieces:
            yield piece, index
            if piece.end:
                index += 1
                info.documents += 1
        if info.documents == 0:
            raise CorpusError(f"{src.label}: contains no documents (only whitespace or separators)")


def _progress(sources: list[_Source], desc: str, enabled: bool) -> tqdm:
    sizes = [s.size for s in sources]
    total = sum(sizes) if all(s is not None for s in sizes) else None  # type: ignore[misc]
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not enabled, leave=False)


def _train_bpe(sources: list[_Source], opts: PrepareOptions, separator: str, carve: bool) -> BPETokenizer:
    if not opts.vocab_size:
        raise CorpusError("--tokenizer bpe needs --vocab-size")
    infos: list[SourceInfo] = []
    bar = _progress(sources, "train BPE (read)", opts.progress)

    errors: list[BaseException] = []

    def texts() -> Iterator[str]:
        seen = 0
        try:
            for piece, index in _pieces(sources, opts, separator, infos):
                if not (carve and _in_val(index, opts.val_fraction)) and piece.text:
                    yield piece.text
                now = sum(i.bytes for i in infos)
                bar.update(now - seen)
                seen = now
        except Exception as e:  # kept and re-raised below: the Rust trainer would wrap or swallow it
            errors.append(e)

    try:
        tok = BPETokenizer.train(texts(), opts.vocab_size, show_progress=opts.progress)
    finally:
        bar.close()
    if errors:
        raise errors[0]
    return tok


def _tokenize(
    sources: list[_Source],
    opts: PrepareOptions,
    separator: str,
    tok: GPT2Tokenizer | BPETokenizer,
    writers: dict[str, ShardWriter],
    carve: bool,
    desc: str,
) -> list[SourceInfo]:
    """Encode every document of ``sources`` into ``writers['train']`` (``writers['val']`` for the carved-out ones)."""
    infos: list[SourceInfo] = []
    bar = _progress(sources, desc, opts.progress)
    seen = 0
    batch: list[tuple[Piece, str]] = []
    chars = 0

    def flush() -> None:
        ids = tok.encode_batch([p.text for p, _ in batch])
        for name, w in writers.items():
            out: list[int] = []
            docs = 0
            for (piece, dest), piece_ids in zip(batch, ids, strict=True):
                if dest == name:
                    out.extend(piece_ids)
                    if piece.end:
                        out.append(tok.eot_id)  # the EOT follows each document
                        docs += 1
            if out or docs:
                w.write(np.asarray(out, dtype=np.int64), docs)
        batch.clear()

    try:
        for piece, index in _pieces(sources, opts, separator, infos):
            batch.append((piece, "val" if carve and _in_val(index, opts.val_fraction) else "train"))
            chars += len(piece.text)
            if chars >= BATCH_CHARS:
                flush()
                chars = 0
                now = sum(i.bytes for i in infos)
                bar.update(now - seen)
                seen = now
        if batch:
            flush()
        bar.update(sum(i.bytes for i in infos) - seen)
    finally:
        bar.close()
    return infos


def prepare(opts: PrepareOptions) -> dict[str, Any]:
    """Tokenize the corpus into ``opts.out``; returns the meta dict written to ``meta.json``."""
    separator = decode_separator(opts.separator)
    train_sources, val_sources = _plan(opts)
    carve = not val_sources and opts.val_fraction > 0
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise CorpusError(f"--out {out} exists and is not a directory")

    if opts.tokenizer == "gpt2":
        if opts.vocab_size not in (None, GPT2_VOCAB):
            raise CorpusError(f"--vocab-size {opts.vocab_size} does not apply to gpt2 (its vocabulary is {GPT2_VOCAB})")
        dtype = dtype_for_vocab(GPT2_VOCAB, opts.dtype, "the GPT-2 vocabulary")
        tok: GPT2Tokenizer | BPETokenizer = GPT2Tokenizer(opts.gpt2_dir)
    elif opts.tokenizer == "bpe":
        if not opts.vocab_size:
            raise CorpusError("--tokenizer bpe needs --vocab-size (e.g. 4096)")
        dtype = dtype_for_vocab(opts.vocab_size, opts.dtype, f"--vocab-size {opts.vocab_size}")  # before training
        tok = _train_bpe(train_sources, opts, separator, carve)
        dtype = dtype_for_vocab(tok.vocab_size, opts.dtype, "the trained BPE")
    else:
        raise CorpusError(f"unknown tokenizer {opts.tokenizer!r} (known: gpt2, bpe)")

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    writers = {"train": ShardWriter(out / "train.bin", dtype, tok.vocab_size)}
    if carve or val_sources:
        writers["val"] = ShardWriter(out / "val.bin", dtype, tok.vocab_size)
    bpe_tmp = out / f".{BPE_FILE}.tmp"
    try:
        train_infos = _tokenize(
            train_sources, opts, separator, tok, writers if carve else {"train": writers["train"]}, carve, "train"
        )
        splits: dict[str, dict[str, Any]] = {}
        sources = [i.finish() for i in train_infos]
        splits["train"] = {"tokens": writers["train"].tokens, "documents": writers["train"].documents}
        splits["train"]["sources"] = sources
        if val_sources:
            val_infos = _tokenize(val_sources, opts, separator, tok, {"train": writers["val"]}, False, "val")
            sources = [i.finish() for i in val_infos]
        if "val" in writers:
            splits["val"] = {"tokens": writers["val"].tokens, "documents": writers["val"].documents, "sources": sources}
        for name, s in splits.items():
            if s["documents"] == 0:
                hint = " (raise --val-fraction or give --val files)" if name == "val" and carve else ""
                raise CorpusError(f"the {name} split has no documents{hint}")
        if isinstance(tok, BPETokenizer):
            bpe_tmp.write_text(tok.to_json(), encoding="utf-8")
    except BaseException:
        for w in writers.values():
            w.discard()
        bpe_tmp.unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()  # leave no trace of a failed run
        raise
    # everything succeeded: move into place, meta.json last
    for w in writers.values():
        w.commit()
    if isinstance(tok, BPETokenizer):
        bpe_tmp.replace(out / BPE_FILE)
    meta = {
        "format": FORMAT,
        "tokenizer": tok.to_meta(),
        "dtype": dtype,
        "splits": splits,
        "created_by": f"memory_mosaics {__version__} (mosaic prepare)",
        "options": {
            "separator": opts.separator,
            "format": opts.fmt,
            "text_field": opts.text_field,
            "val_fraction": opts.val_fraction if carve else None,
        },
    }
    write_meta(out, meta)
    return meta
