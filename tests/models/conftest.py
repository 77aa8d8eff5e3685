import pytest

from memory_mosaics.models import GPT, GPTConfig, MemoryMosaic, MosaicConfig

TINY = dict(vocab_size=61, block_size=32, n_layer=2, n_head=4, n_embd=32)


def tiny_models():
    """One Memory Mosaic per persistent kind, one GPT per position encoding."""
    models = {f"mosaic-{k}": MemoryMosaic(MosaicConfig(**TINY, persistent=k)) for k in ("memory", "mlp", "none")}
    models.update({f"gpt-{p}": GPT(GPTConfig(**TINY, pos=p)) for p in ("learned", "rope", "alibi", "none")})
    return models


@pytest.fixture(params=list(tiny_models()))
def model(request):
    return tiny_models()[request.param].eval()


@pytest.fixture
def tiny():
    """The tiny shape every model test uses."""
    return dict(TINY)
