"""Corpora as streams of documents: local ``.txt`` and ``.jsonl`` files, and Hugging Face datasets.

Everything streams: a file is read in 1 MiB blocks, so a corpus (or a single document) larger than memory works. A
document is yielded as ``Piece``s; a long document is cut only where a newline is followed by a non-space character,
a point where GPT-2's pre-tokenizer always cuts too, so encoding the pieces one by one gives exactly the ids of the
whole document. Documents are stripped of surrounding whitespace; empty ones are skipped.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memory_mosaics.data.tokenizer import EOT

BLOCK = 1 << 20  # bytes read at a time
MAX_PIECE = 4 << 20  # characters of one document held before a piece is cut off
SEPARATORS = ("blank-line", "line", "file")
FORMATS = ("auto", "txt", "jsonl")
TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
_SAFE_CUT = re.compile(r"\n(?=\S)")


class CorpusError(ValueError):
    """A corpus cannot be read; the message names the file and the problem."""


@dataclass
class Piece:
    text: str
    end: bool  # the last piece of its document


@dataclass
class SourceInfo:
    """What meta.json records about an input: its path, the sha256 and size of its bytes."""

    path: str
    sha256: str = ""
    bytes: int = 0
    documents: int = 0
    _hash: Any = field(default_factory=hashlib.sha256, repr=False)

    def update(self, data: bytes) -> None:
        self._hash.update(data)
        self.bytes += len(data)

    def finish(self) -> dict[str, Any]:
        self.sha256 = self._hash.hexdigest()
        return {"path": self.path, "sha256": self.sha256, "bytes": self.bytes}


def expand_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """Files, directories (every .txt/.jsonl file inside, recursively) and glob patterns, in a deterministic order."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if any(ch in str(p) for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True))
            if not matches:
                raise CorpusError(f"{p}: the pattern matches no file")
            out.extend(m for m in matches if m.is_file())
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in TEXT_SUFFIXES + JSONL_SUFFIXES)
            if not found:
                raise CorpusError(f"{p}: the directory holds no .txt or .jsonl file")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise CorpusError(f"{p}: no such file or directory")
    return out


def file_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    return "jsonl" if path.suffix in JSONL_SUFFIXES else "txt"


def decode_separator(sep: str) -> str:
    """``blank-line``, ``line`` and ``file`` are modes; anything else is a literal marker, with backslash escapes
    (``\\n``, ``\\x00``) decoded."""
    if sep in SEPARATORS:
        return sep
    marker = codecs.decode(sep, "unicode_escape") if "\\" in sep else sep
    if not marker:
        raise CorpusError("the document separator is empty")
    return marker


def read_text_blocks(path: Path, info: SourceInfo) -> Iterator[str]:
    """The file's text, strict UTF-8, newlines normalised to ``\\n``; the sha256 of the raw bytes accumulates in
    ``info``. A decoding error names the file and the byte offset."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    newline = io.IncrementalNewlineDecoder(None, translate=True)
    offset = 0
    first = True
    try:
        f = path.open("rb")
    except OSError as e:
        raise CorpusError(f"{path}: cannot open: {e.strerror or e}") from e
    with f:
        while True:
            data = f.read(BLOCK)
            final = not data
            info.update(data)
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(data, final=final)
            except UnicodeDecodeError as e:
                raise CorpusError(
                    f"{path}: not valid UTF-8 at byte {offset - pending + e.start} ({e.reason}); "
                    "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                ) from None
            offset += len(data)
            text = newline.decode(text, final=final)
            if first and text:
                text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is not text
                first = False
            if text:
                yield text
            if final:
                return


def read_utf8(path: Path) -> str:
    """A whole text file, read as ``read_text_blocks`` reads corpora: strict UTF-8, newlines normalised, a decoding
    error naming the file and the byte offset (a CorpusError, hence a ValueError)."""
    return "".join(read_text_blocks(path, SourceInfo(str(path))))


def split_documents(blocks: Iterable[str], separator: str) -> Iterator[Piece]:
    """Cut a stream of text into documents (as pieces). ``separator`` is a literal marker or a mode of SEPARATORS."""
    if separator == "blank-line":
        pattern: re.Pattern[str] | None = re.compile(r"\n[^\S\n]*\n")
        hold = 0  # a blank line is whitespace only, and a safe cut point is before non-space: never inside one
    elif separator == "line":
        pattern, hold = re.compile(r"\n"), 0
    elif separator == "file":
        pattern, hold = None, 0
    else:
        pattern, hold = re.compile(re.escape(separator)), len(separator)
    doc = _Document()
    buf = ""
    for block in blocks:
        buf += block
        if pattern is not None:
            start = 0
            for m in pattern.finditer(buf):
                yield from doc.add(buf[start : m.start()], end=True)
                start = m.end()
            buf = buf[start:]
        if len(buf) > MAX_PIECE:  # a long document: hand over all but the tail, cut at a safe point
            limit = len(buf) - hold
            cut = None
            for m in _SAFE_CUT.finditer(buf, 0, max(0, limit)):
                cut = m.end()
            if cut:
                yield from doc.add(buf[:cut], end=False)
                buf = buf[cut:]
    yield from doc.add(buf, end=True)


class _Document:
    """Strips each document and drops empty ones, across piece boundaries."""

    def __init__(self) -> None:
        self.started = False

    def add(self, text: str, end: bool) -> Iterator[Piece]:
        if not self.started:
            text = text.lstrip()
        if end:
            text = text.rstrip()
            if text or self.started:
                yield Piece(text, True)
            self.started = False
        elif text:
            self.started = True
            yield Piece(text, False)


def read_jsonl(path: Path, info: SourceInfo, field_name: str) -> Iterator[Piece]:
    """One document per line: an object whose ``field_name`` is the text, or a JSON string (BabiStories' format)."""
    buf = ""
    lineno = 0

    def parse(line: str) -> Iterator[Piece]:
        if not line.strip():
            return
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if isinstance(obj, dict):
            if field_name not in obj:
                raise CorpusError(
                    f"{path}:{lineno}: no field {field_name!r} (fields: {', '.join(map(str, obj))}); set --text-field"
                )
            obj = obj[field_name]
        if not isinstance(obj, str):
            raise CorpusError(f"{path}:{lineno}: the text is a {type(obj).__name__}, not a string")
        text = obj.strip()
        if text:
            yield Piece(text, True)

    for block in read_text_blocks(path, info):
        buf += block
        *lines, buf = buf.split("\n")
        for line in lines:
            lineno += 1
            yield from parse(line)
    lineno += 1
    yield from parse(buf)


def file_documents(path: Path, info: SourceInfo, separator: str, fmt: str, text_field: str) -> Iterator[Piece]:
    if file_format(path, fmt) == "jsonl":
        return read_jsonl(path, info, text_field)
    return split_documents(read_text_blocks(path, info), separator)


# ---- Hugging Face datasets -------------------------------------------------------------------------------------------
# short names for the paper's corpora; BabiStories ships as .txt files of JSON strings (use --input ... --format jsonl)
HF_ALIASES: dict[str, tuple[str, str | None]] = {
    "tinystories": ("roneneldan/TinyStories", None),
    "simplewiki": ("wikimedia/wikipedia", "20231101.simple"),
}


def require_datasets(name: str) -> Any:
    try:
        import datasets
    except ImportError as e:
        raise CorpusError(
            f"--hf-dataset {name} needs the optional dependency `datasets`: pip install 'memory-mosaics[hf]'"
        ) from e
    return datasets


def hf_documents(name: str, config: str | None, split: str, info: SourceInfo, text_field: str) -> Iterator[Piece]:
    """Stream a Hugging Face dataset (``datasets`` is an optional dependency, imported only here). The recorded sha256
    is that of the streamed texts (each document's UTF-8 bytes followed by a NUL)."""
    datasets = require_datasets(name)
    repo, alias_config = HF_ALIASES.get(name.lower(), (name, None))
    try:
        ds = datasets.load_dataset(repo, config or alias_config, split=split, streaming=True)
    except Exception as e:  # network, unknown dataset or split: datasets raises many kinds
        raise CorpusError(f"cannot open Hugging Face dataset {repo} (split {split}): {e}") from e
    for i, row in enumerate(ds):
        if text_field not in row:
            raise CorpusError(f"{repo} row {i}: no field {text_field!r} (fields: {', '.join(row)}); set --text-field")
        text = row[text_field]
        info.update(text.encode("utf-8") + b"\0")
        text = text.strip()
        if text:
            yield Piece(text, True)


def encode_text(path: Path, tokenizer: Any) -> np.ndarray:
    """A .txt file (documents separated by <|endoftext|>) or a .jsonl file (field "text") as one token stream."""
    text = read_utf8(path)
    if path.suffix in (".jsonl", ".ndjson"):
        docs = [json.loads(ln) for ln in text.splitlines() if ln.strip()]
        docs = [d if isinstance(d, str) else d["text"] for d in docs]
    else:
        docs = [d.strip() for d in text.split(EOT)]
    ids: list[int] = []
    for doc in docs:
        if doc:
            ids.extend(tokenizer.encode(doc))
            ids.append(tokenizer.eot_id)
    return np.asarray(ids, dtype=np.int64)
