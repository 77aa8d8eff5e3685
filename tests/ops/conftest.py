import pytest
import torch
from torch import Tensor


def _assert_same_outputs_and_gradients(
    out: Tensor | tuple[Tensor, ...],
    ref: Tensor | tuple[Tensor, ...],
    inputs: list[Tensor | None] | tuple[Tensor | None, ...],
    tol: float | None = None,
    grad_tol: float | None = None,
    materialize: bool = False,
) -> None:
    """A form against its reference: outputs equal, and so are the gradients, with respect to every input (None entries
    skipped), of one random projection of all outputs. ``tol``/``grad_tol``: rtol = atol (None: assert_close's
    defaults); ``materialize``: an input neither uses gets zero gradients instead of an error."""
    outs, refs = (out, ref) if isinstance(out, tuple) else ((out,), (ref,))
    for a, b in zip(outs, refs, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    inputs = [t for t in inputs if t is not None]
    weights = [torch.randn_like(a) for a in outs]
    g, g_ref = (
        torch.autograd.grad(
            sum((y * w).sum() for y, w in zip(ys, weights, strict=True)), inputs, materialize_grads=materialize
        )
        for ys in (outs, refs)
    )
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=grad_tol, atol=grad_tol)


@pytest.fixture
def assert_same_outputs_and_gradients():
    return _assert_same_outputs_and_gradients
