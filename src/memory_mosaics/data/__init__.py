"""Data: corpora -> token shards (``mosaic prepare``), tokenizers, and the authors' checkpoint importer."""

from memory_mosaics.data.shards import ShardError, TokenShard, read_meta
from memory_mosaics.data.sources import CorpusError
from memory_mosaics.data.tokenizer import BPETokenizer, GPT2Tokenizer, Tokenizer, TokenizerError, load_tokenizer

__all__ = [
    "BPETokenizer",
    "CorpusError",
    "GPT2Tokenizer",
    "ShardError",
    "TokenShard",
    "Tokenizer",
    "TokenizerError",
    "load_tokenizer",
    "read_meta",
]
