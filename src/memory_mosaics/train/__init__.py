"""Language-model training: flat options, seed-determined batches, warm-up + cosine schedule, atomic checkpoints with
exact resume, DDP under ``torchrun``, evaluation."""

from memory_mosaics.train.config import TrainConfig
from memory_mosaics.train.loop import train

__all__ = ["TrainConfig", "train"]
