"""Operations of Memory Mosaics, each as a naive reference, a parallel form and a step form."""

from memory_mosaics.ops.leaky import leaky_average, leaky_average_naive, leaky_average_step
from memory_mosaics.ops.retrieval import gaussian_retrieval_naive, retrieval, retrieval_naive, retrieval_step

__all__ = [
    "gaussian_retrieval_naive",
    "leaky_average",
    "leaky_average_naive",
    "leaky_average_step",
    "retrieval",
    "retrieval_naive",
    "retrieval_step",
]
