"""Tokenizers: GPT-2 BPE (as in the paper, via ``tiktoken``, offline) and a byte-level BPE trained on the corpus.

Both expose the same small interface (``Tokenizer``): ``encode``, ``decode``, ``vocab_size``, ``eot_id``. The
end-of-text token ``<|endoftext|>`` separates documents in the shards.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

EOT = "<|endoftext|>"
GPT2_VOCAB = 50257
GPT2_EOT_ID = 50256
GPT2_ENV = "MOSAIC_GPT2_DIR"
BPE_FILE = "tokenizer.json"
# sha256 of the official GPT-2 files, as hard-coded in tiktoken_ext/openai_public.py
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
# tiktoken names its cache files by the sha1 of the download URL
CACHE_FILES = {
    "6d1cbeee0f20b3d9449abfede4726ed8212e3aee": VOCAB_BPE_SHA256,
    "6c7ea1a7e38e3a7f062df639a5b80947f075ffe6": ENCODER_JSON_SHA256,
}


class TokenizerError(ValueError):
    """A tokenizer cannot be found, loaded or trained; the message names the file and the problem."""


class Tokenizer(Protocol):
    kind: str
    vocab_size: int
    eot_id: int

    def encode(self, text: str) -> list[int]: ...

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...

    def decode(self, ids: Iterable[int]) -> str: ...


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in blocks (tokenizer files, checkpoint manifests)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


# ---- GPT-2 -----------------------------------------------------------------------------------------------------------
def find_gpt2_dir(explicit: str | Path | None = None) -> Path | None:
    """Where the GPT-2 files are: ``explicit``, else ``$MOSAIC_GPT2_DIR``, else a ``gpt2_tokenizer`` folder at
    ``../shared/data/gpt2_tokenizer`` relative to the repository root or the working directory. None if not found."""
    if explicit is not None:
        return Path(explicit)
    if os.environ.get(GPT2_ENV):
        return Path(os.environ[GPT2_ENV])
    repo_root = Path(__file__).resolve().parents[3]  # src/memory_mosaics/data/tokenizer.py -> repository root
    for base in (repo_root, Path.cwd()):
        candidate = base.parent / "shared" / "data" / "gpt2_tokenizer"
        if candidate.is_dir():
            return candidate
    return None


class GPT2Tokenizer:
    """GPT-2 BPE through ``tiktoken`` (50,257 tokens, ``<|endoftext|>`` = 50256), loaded without network access."""

    kind = "gpt2"

    def __init__(self, gpt2_dir: str | Path | None = None) -> None:
        self.encoding = load_gpt2_encoding(gpt2_dir)
        self.vocab_size: int = self.encoding.n_vocab
        self.eot_id: int = self.encoding.eot_token

    def encode(self, text: str) -> list[int]:
        """Prompts may contain ``<|endoftext|>``, which becomes the end-of-text token."""
        return self.encoding.encode(text, allowed_special={EOT})

    def encode_ordinary(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Document text only: a literal ``<|endoftext|>`` inside a document is ordinary text (as in nanoGPT)."""
        return self.encoding.encode_ordinary_batch(texts, num_threads=min(8, os.cpu_count() or 1))

    def decode(self, ids: Iterable[int]) -> str:
        return self.encoding.decode(list(ids))

    def to_meta(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": None, "vocab_size": self.vocab_size, "eot_id": self.eot_id}


def load_gpt2_encoding(gpt2_dir: str | Path | None = None) -> Any:
    """A ``tiktoken.Encoding`` for GPT-2, from (in order): the folder's ``tiktoken_cache/`` (through
    ``TIKTOKEN_CACHE_DIR``), its ``encoder.json`` + ``vocab.bpe``, or tiktoken's own cache/download. Files are
    hash-checked first, because tiktoken silently deletes a cached file whose hash is wrong."""
    import tiktoken

    d = find_gpt2_dir(gpt2_dir)
    tried: list[str] = []
    if d is not None:
        if not d.is_dir():
            raise TokenizerError(f"GPT-2 tokenizer folder {d} does not exist")
        cache = d / "tiktoken_cache"
        if all((cache / name).is_file() for name in CACHE_FILES):
            for name, digest in CACHE_FILES.items():
                if sha256_file(cache / name) != digest:
                    raise TokenizerError(f"{cache / name} is not the genuine GPT-2 file (sha256 mismatch)")
            with _env("TIKTOKEN_CACHE_DIR", str(cache)):
                return tiktoken.get_encoding("gpt2")
        tried.append(str(cache))
        enc_json, vocab_bpe = d / "encoder.json", d / "vocab.bpe"
        if enc_json.is_file() and vocab_bpe.is_file():
            return _encoding_from_files(enc_json, vocab_bpe)
        tried.append(f"{enc_json} + {vocab_bpe}")
    try:
        return tiktoken.get_encoding("gpt2")  # tiktoken's own cache, or the network where there is one
    except Exception as e:
        where = ", ".join(tried) if tried else f"no folder given (set --gpt2-dir or ${GPT2_ENV})"
        raise TokenizerError(
            f"cannot load the GPT-2 tokenizer offline: looked in {where}; tiktoken's download failed: {e}"
        ) from e


def _encoding_from_files(encoder_json: Path, vocab_bpe: Path) -> Any:
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    try:
        from tiktoken_ext.openai_public import r50k_pat_str
    except ImportError:  # older tiktoken: GPT-2's pattern, as it defined it inline
        r50k_pat_str = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

    for path, digest in ((encoder_json, ENCODER_JSON_SHA256), (vocab_bpe, VOCAB_BPE_SHA256)):
        if sha256_file(path) != digest:
            raise TokenizerError(f"{path} is not the genuine GPT-2 file (sha256 mismatch)")
    with _env("TIKTOKEN_CACHE_DIR", ""):  # "" disables tiktoken's cache: never write next to read-only files
        ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=str(vocab_bpe), encoder_json_file=str(encoder_json))
    return tiktoken.Encoding(
        name="gpt2",
        explicit_n_vocab=GPT2_VOCAB,
        pat_str=r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={EOT: GPT2_EOT_ID},
    )


# ---- byte-level BPE trained on the corpus ----------------------------------------------------------------------------
class BPETokenizer:
    """A byte-level BPE (GPT-2 pre-tokenisation, 256 byte symbols, ``<|endoftext|>`` = id 0) saved as
    ``tokenizer.json`` next to the shards. Small vocabularies matter at laptop scale: the embedding dominates."""

    kind = "bpe"

    def __init__(self, tokenizer: Any, path: Path | None = None) -> None:
        self.tokenizer = tokenizer
        self.path = path
        self.vocab_size: int = tokenizer.get_vocab_size(with_added_tokens=True)
        eot = tokenizer.token_to_id(EOT)
        if eot is None:
            raise TokenizerError(f"{path or 'tokenizer'} has no {EOT} token")
        self.eot_id: int = eot

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer

        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"tokenizer file {path} does not exist")
        try:
            return cls(HFTokenizer.from_file(str(path)), path)
        except Exception as e:  # the Rust side raises plain Exceptions
            raise TokenizerError(f"cannot load tokenizer {path}: {e}") from e

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, show_progress: bool = True) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        if vocab_size < 257:
            raise TokenizerError(f"a byte-level BPE needs vocab_size >= 257 (256 bytes + {EOT}), got {vocab_size}")
        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOT],  # first, so its id is 0
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable, whatever the corpus
            show_progress=show_progress,
        )
        tok.train_from_iterator(texts, trainer)
        return cls(tok)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        self.tokenizer.save(str(tmp))
        tmp.replace(path)
        self.path = path
        return path

    def to_json(self) -> str:
        return self.tokenizer.to_str()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def to_meta(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": BPE_FILE, "vocab_size": self.vocab_size, "eot_id": self.eot_id}


# ---- loading from a prepared dataset ---------------------------------------------------------------------------------
def load_tokenizer(
    directory_or_meta: str | Path | dict[str, Any], gpt2_dir: str | Path | None = None
) -> GPT2Tokenizer | BPETokenizer:
    """The tokenizer of a prepared dataset: its directory (with ``meta.json``) or its meta dict. A meta dict with a
    relative ``path`` needs ``meta["_directory"]`` (set by ``TokenShard``/``read_meta``) to find the file."""
    from memory_mosaics.data.shards import read_meta

    if isinstance(directory_or_meta, dict):
        meta, directory = directory_or_meta, directory_or_meta.get("_directory")
    else:
        directory = Path(directory_or_meta)
        meta = read_meta(directory)
    where = f"{directory}/meta.json" if directory is not None else "meta"
    try:
        spec = meta["tokenizer"]
        kind = spec["kind"]
    except (KeyError, TypeError) as e:
        raise TokenizerError(f"{where} has no tokenizer description: {e}") from e
    if kind == "gpt2":
        tok: GPT2Tokenizer | BPETokenizer = GPT2Tokenizer(gpt2_dir)
    elif kind == "bpe":
        if not spec.get("path"):
            raise TokenizerError(f"{where}: a bpe tokenizer needs a 'path'")
        path = Path(spec["path"])
        if not path.is_absolute():
            if directory is None:
                raise TokenizerError(f"{where}: relative tokenizer path {path} but no dataset directory is known")
            path = Path(directory) / path
        tok = BPETokenizer.load(path)
    else:
        raise TokenizerError(f"{where}: unknown tokenizer kind {kind!r} (known: gpt2, bpe)")
    for key in ("vocab_size", "eot_id"):
        if key in spec and spec[key] != getattr(tok, key):
            raise TokenizerError(
                f"{where} says {key} {spec[key]} but the {kind} tokenizer has {getattr(tok, key)}: "
                "the tokenizer file does not belong to these shards"
            )
    return tok
