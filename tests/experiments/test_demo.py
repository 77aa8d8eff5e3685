import torch

from memory_mosaics.experiments.demo import stream_error
from memory_mosaics.models import build_model


def test_streaming_matches_a_full_forward():
    torch.manual_seed(0)
    model = build_model("mosaic", vocab_size=16, block_size=32, n_layer=1, n_head=2, n_embd=16).double().eval()
    x = torch.randint(0, 16, (2, 40))  # longer than block_size: a Memory Mosaic has no positions
    assert stream_error(model, x, prefill=8) < 1e-9
