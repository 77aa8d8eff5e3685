"""Language models: the Memory Mosaic and the GPT-2 baseline."""

import dataclasses
from typing import Any

from memory_mosaics.layers.block import PERSISTENT_KINDS
from memory_mosaics.models.base import INITS, LanguageModel
from memory_mosaics.models.gpt import GPT, POSITION_ENCODINGS, GPTConfig
from memory_mosaics.models.llama import Llama, LlamaConfig
from memory_mosaics.models.mosaic import MemoryMosaic, MosaicConfig
from memory_mosaics.models.mosaic_v2 import MemoryMosaicV2, MosaicV2Config

MODELS: dict[str, type[LanguageModel]] = {"mosaic": MemoryMosaic, "mosaic2": MemoryMosaicV2, "gpt": GPT, "llama": Llama}


def model_config(arch: str, **fields: Any) -> Any:
    """The architecture-only config of ``arch`` (a key of MODELS) from ``fields``. Fields that only another
    architecture has (a GPT's ``pos``, a Memory Mosaic's ``pmem_size``) are left out, so one set of flags serves every
    architecture; a field that no architecture has is an error."""
    if arch not in MODELS:
        raise ValueError(f"unknown architecture {arch!r} (known: {sorted(MODELS)})")
    known = {f.name for cls in MODELS.values() for f in dataclasses.fields(cls.config_class)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"no architecture has the config field(s) {unknown}")
    config_class = MODELS[arch].config_class
    mine = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{k: v for k, v in fields.items() if k in mine})


def build_model(arch: str, **fields: Any) -> LanguageModel:
    """A freshly initialised ``arch`` model: the one place every command and trainer builds its model."""
    config = model_config(arch, **fields)  # an unknown architecture is refused here
    return MODELS[arch](config)


__all__ = [
    "GPT",
    "INITS",
    "MODELS",
    "PERSISTENT_KINDS",
    "POSITION_ENCODINGS",
    "GPTConfig",
    "LanguageModel",
    "Llama",
    "LlamaConfig",
    "MemoryMosaic",
    "MemoryMosaicV2",
    "MosaicConfig",
    "MosaicV2Config",
    "build_model",
    "model_config",
]
