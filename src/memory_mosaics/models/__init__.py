"""Language models: the Memory Mosaic and the GPT-2 baseline."""

import dataclasses
from pathlib import Path
from typing import Any

from memory_mosaics.layers.block import PERSISTENT_KINDS
from memory_mosaics.models.base import INITS, LanguageModel, read_config
from memory_mosaics.models.gpt import GPT, POSITION_ENCODINGS, GPTConfig
from memory_mosaics.models.mosaic import MemoryMosaic, MosaicConfig

MODELS: dict[str, type[LanguageModel]] = {"mosaic": MemoryMosaic, "gpt": GPT}


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
    return MODELS[arch](model_config(arch, **fields)) if arch in MODELS else model_config(arch)


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
    "build_model",
    "load_pretrained",
    "model_config",
]
