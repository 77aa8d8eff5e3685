"""Operations of Memory Mosaics, each as a naive reference, a parallel (training) form and a step (streaming) form."""

from memory_mosaics.ops.gated import gated_keys, gated_keys_naive, gated_keys_step
from memory_mosaics.ops.leaky import (
    leaky_average,
    leaky_average_naive,
    leaky_average_step,
    scaled_leaky_keys,
    scaled_leaky_keys_naive,
    scaled_leaky_keys_step,
)
from memory_mosaics.ops.peek import peek_values, peek_values_naive, peek_values_step
from memory_mosaics.ops.retrieval import (
    bank_retrieval,
    gaussian_retrieval_naive,
    retrieval,
    retrieval_naive,
    retrieval_step,
)
from memory_mosaics.ops.windowed import windowed_retrieval, windowed_retrieval_naive, windowed_retrieval_step

__all__ = [
    "bank_retrieval",
    "gated_keys",
    "gated_keys_naive",
    "gated_keys_step",
    "gaussian_retrieval_naive",
    "leaky_average",
    "leaky_average_naive",
    "leaky_average_step",
    "peek_values",
    "peek_values_naive",
    "peek_values_step",
    "retrieval",
    "retrieval_naive",
    "retrieval_step",
    "scaled_leaky_keys",
    "scaled_leaky_keys_naive",
    "scaled_leaky_keys_step",
    "windowed_retrieval",
    "windowed_retrieval_naive",
    "windowed_retrieval_step",
]
