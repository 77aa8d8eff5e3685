"""Memory Mosaics (Zhang, Nolte, Sadhukhan, Chen, Bottou, ICLR 2025) in PyTorch."""

from memory_mosaics.checkpoints import load_pretrained
from memory_mosaics.models import (
    GPT,
    GPTConfig,
    LanguageModel,
    MemoryMosaic,
    MemoryMosaicV2,
    MosaicConfig,
    MosaicV2Config,
    build_model,
)

__version__ = "0.1.0"

__all__ = [
    "GPT",
    "GPTConfig",
    "LanguageModel",
    "MemoryMosaic",
    "MemoryMosaicV2",
    "MosaicConfig",
    "MosaicV2Config",
    "build_model",
    "load_pretrained",
]
