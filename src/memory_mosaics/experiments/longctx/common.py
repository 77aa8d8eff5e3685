"""What every generated long-context task shares: the batch it returns, the ignore index, seeded generators."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

IGNORE = -1  # the library's loss ignores this target (models.base.LanguageModel.forward: ignore_index=-1)


@dataclass(frozen=True)
class TaskBatch:
    """Model inputs (B, T) and targets (B, T): ``targets[b, t]`` is the token the model must predict after reading
    ``inputs[b, : t + 1]`` at a scored position, and IGNORE everywhere else."""

    inputs: Tensor
    targets: Tensor

    def __post_init__(self) -> None:
        if self.inputs.shape != self.targets.shape or self.inputs.dim() != 2:
            raise ValueError(f"inputs {tuple(self.inputs.shape)} and targets {tuple(self.targets.shape)} differ")

    @property
    def scored(self) -> Tensor:
        return self.targets != IGNORE


def rng(*key: int) -> np.random.Generator:
    """A numpy generator that is a function of the integers ``key`` alone (seed, step, ...): batches reproduce."""
    return np.random.default_rng([int(k) for k in key])


def to_batch(inputs: np.ndarray, targets: np.ndarray) -> TaskBatch:
    return TaskBatch(torch.from_numpy(inputs.astype(np.int64)), torch.from_numpy(targets.astype(np.int64)))
