"""Layers of a Memory Mosaic: feature extractors, contextual and persistent memories, the block."""

from memory_mosaics.layers.block import MosaicBlock, MosaicBlockState
from memory_mosaics.layers.contextual import ContextualMemory
from memory_mosaics.layers.features import KeyExtractor, ValueExtractor
from memory_mosaics.layers.mlp import MLP
from memory_mosaics.layers.persistent import PersistentMemory

__all__ = [
    "MLP",
    "ContextualMemory",
    "KeyExtractor",
    "MosaicBlock",
    "MosaicBlockState",
    "PersistentMemory",
    "ValueExtractor",
]
