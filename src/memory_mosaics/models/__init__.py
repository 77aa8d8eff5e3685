"""Language models: the Memory Mosaic and the GPT-2 baseline."""

from pathlib import Path

from memory_mosaics.layers.block import PERSISTENT_KINDS
from memory_mosaics.models.base import INITS, LanguageModel, read_config
from memory_mosaics.models.gpt import GPT, POSITION_ENCODINGS, GPTConfig
from memory_mosaics.models.mosaic import MemoryMosaic, MosaicConfig

MODELS: dict[str, type[LanguageModel]] = {"mosaic": MemoryMosaic, "gpt": GPT}


def load_pretrained(directory: str | Path, **kwargs: object) -> LanguageModel:
    """Load whichever model ``directory`` holds (see ``LanguageModel.from_pretrained``)."""
    model_type, _ = read_config(Path(directory))
    if model_type not in MODELS:
        raise ValueError(f"{directory}: unknown model_type {model_type!r} (known: {sorted(MODELS)})")
    return MODELS[model_type].from_pretrained(directory, **kwargs)


__all__ = [
    "GPT",
    "INITS",
    "MODELS",
    "PERSISTENT_KINDS",
    "POSITION_ENCODINGS",
    "GPTConfig",
    "LanguageModel",
    "MemoryMosaic",
    "MosaicConfig",
    "load_pretrained",
]
