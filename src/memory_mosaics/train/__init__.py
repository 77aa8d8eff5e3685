"""Language-model training: flat options, seed-determined batches, warm-up + cosine schedule, atomic checkpoints with
exact resume, DDP / FSDP under ``torchrun``."""

from memory_mosaics.train.config import TrainConfig
from memory_mosaics.train.engine import train

__all__ = ["TrainConfig", "train"]
