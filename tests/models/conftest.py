import pytest
import torch

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


def fit(model, idx, steps: int = 15, each_step=None) -> list[float]:
    """A few AdamW steps of next-token training on ``idx``; ``each_step(step)`` runs before each. The losses."""
    opt = model.configure_optimizers(0.1, 3e-3)
    losses = []
    for step in range(steps):
        if each_step is not None:
            each_step(step)
        _, loss = model(idx[:, :-1], idx[:, 1:])
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses


def stream(model, idx, chunks: list[int]):
    """Logits of ``idx`` read through a fresh streaming state in chunks of the given lengths, and the state."""
    state, parts, t = model.init_state(), [], 0
    for n in chunks:
        parts.append(model(idx[:, t : t + n], state=state)[0])
        t += n
    return torch.cat(parts, dim=1), state
