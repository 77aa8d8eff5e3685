"""Token shards: the on-disk format the trainer reads.

A prepared dataset is a directory with ``meta.json`` and one ``<split>.bin`` per split: raw little-endian token ids,
uint16 when the vocabulary fits (≤ 65536 ids) else uint32, documents concatenated with the end-of-text id after each.

``meta.json``::

    {"format": 1,
     "tokenizer": {"kind": "gpt2" | "bpe", "path": "<file relative to the directory, or null>",
                   "vocab_size": int, "eot_id": int},
     "dtype": "uint16" | "uint32",
     "splits": {"train": {"tokens": int, "documents": int,
                          "sources": [{"path": str, "sha256": str, "bytes": int}]}, ...},
     "created_by": "..."}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

FORMAT = 1
META_FILE = "meta.json"
VAL_SPLITS = ("val", "valid", "validation")  # the names a validation split goes by, in order of preference
DTYPES: dict[str, np.dtype] = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


class ShardError(ValueError):
    """A prepared dataset is missing, incomplete or inconsistent; the message names the file and the problem."""


def dtype_for_vocab(vocab_size: int, requested: str = "auto", source: str = "vocabulary") -> str:
    """uint16 when every id (< vocab_size) fits, else uint32; refuses a requested dtype that is too small."""
    if requested == "auto":
        return "uint16" if vocab_size <= 1 << 16 else "uint32"
    if requested not in DTYPES:
        raise ShardError(f"unknown shard dtype {requested!r} (known: auto, {', '.join(DTYPES)})")
    limit = int(np.iinfo(DTYPES[requested]).max) + 1
    if vocab_size > limit:
        raise ShardError(
            f"{source} has {vocab_size} tokens, more than a {requested} shard can hold ({limit} ids); use uint32"
        )
    return requested


def read_meta(directory: str | Path) -> dict[str, Any]:
    """``meta.json`` of a prepared dataset, checked; ``meta["_directory"]`` is set to the directory (not saved)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ShardError(f"no prepared dataset at {directory}: the directory does not exist (run `mosaic prepare`)")
    path = directory / META_FILE
    if not path.is_file():
        raise ShardError(f"{directory} has no {META_FILE}; is it a directory written by `mosaic prepare`?")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShardError(f"cannot read {path}: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ShardError(f"{path}: unsupported format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    for key in ("tokenizer", "dtype", "splits"):
        if key not in meta:
            raise ShardError(f"{path} lacks the field {key!r}")
    if meta["dtype"] not in DTYPES:
        raise ShardError(f"{path}: unknown dtype {meta['dtype']!r}")
    meta["_directory"] = str(directory)
    return meta


class TokenShard:
    """One split of a prepared dataset, memory-mapped read-only.

    ``tokens`` is a 1-D numpy memmap (uint16 or uint32); slice it and convert with ``.astype(np.int64)`` to train.
    """

    def __init__(self, tokens: np.ndarray, meta: dict[str, Any], split: str, path: Path) -> None:
        self.tokens = tokens
        self.meta = meta
        self.split = split
        self.path = path
        self.vocab_size: int = int(meta["tokenizer"]["vocab_size"])
        self.eot_id: int = int(meta["tokenizer"]["eot_id"])
        self.documents: int = int(meta["splits"][split]["documents"])

    @classmethod
    def open(cls, directory: str | Path, split: str) -> TokenShard:
        directory = Path(directory)
        meta = read_meta(directory)
        splits = meta["splits"]
        if split not in splits:
            raise ShardError(f"{directory}/{META_FILE} has no split {split!r} (it has: {', '.join(sorted(splits))})")
        path = directory / f"{split}.bin"
        if not path.is_file():
            raise ShardError(f"{path} is missing although {META_FILE} lists the split {split!r}")
        dtype = DTYPES[meta["dtype"]]
        expected = int(splits[split]["tokens"])
        size = path.stat().st_size
        if size != expected * dtype.itemsize:
            raise ShardError(
                f"{path} has {size} bytes but {META_FILE} says {expected} {meta['dtype']} tokens "
                f"({expected * dtype.itemsize} bytes): the shard is truncated or from another run"
            )
        if expected == 0:
            raise ShardError(f"{path} is empty")
        tokens = np.memmap(path, dtype=dtype, mode="r", shape=(expected,))
        return cls(tokens, meta, split, path)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def __repr__(self) -> str:
        return f"TokenShard({self.path}, {len(self)} tokens, {self.documents} documents, vocab {self.vocab_size})"


class ShardWriter:
    """Appends token ids to ``<path>.tmp``; ``commit()`` is left to the caller (rename once every split is done), so an
    error never leaves a half-written shard under the final name."""

    def __init__(self, path: Path, dtype: str, vocab_size: int) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.dtype = DTYPES[dtype]
        self.vocab_size = vocab_size
        self.tokens = 0
        self.documents = 0
        self._f = self.tmp.open("wb")

    def write(self, ids: list[int] | np.ndarray, documents: int = 0) -> None:
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size:
            hi = int(arr.max())
            if hi >= self.vocab_size or int(arr.min()) < 0:
                raise ShardError(f"token id {hi} is outside the vocabulary of {self.vocab_size} ({self.path})")
        self._f.write(arr.astype(self.dtype).tobytes())
        self.tokens += int(arr.size)
        self.documents += documents

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()

    def commit(self) -> None:
        self.close()
        self.tmp.replace(self.path)

    def discard(self) -> None:
        self._f.close()
        self.tmp.unlink(missing_ok=True)


def write_meta(directory: Path, meta: dict[str, Any]) -> Path:
    path = directory / META_FILE
    tmp = directory / f".{META_FILE}.tmp"
    tmp.write_text(json.dumps({k: v for k, v in meta.items() if not k.startswith("_")}, indent=2) + "\n")
    tmp.replace(path)
    return path


def default_val_split(directory: str | Path) -> str | None:
    """The validation split of a prepared dataset: the first of VAL_SPLITS it has, or None."""
    splits = read_meta(directory).get("splits", {})
    return next((s for s in VAL_SPLITS if s in splits), None)


def windows(tokens: np.ndarray, starts: np.ndarray, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``tokens[s : s + T + 1]`` for each start into (inputs, targets): int64, (len(starts), T) each."""
    import torch  # here: `mosaic prepare` reads and writes shards without torch

    buf = np.stack([np.asarray(tokens[s : s + T + 1], dtype=np.int64) for s in starts])
    t = torch.from_numpy(buf)
    return t[:, :-1], t[:, 1:]
