"""Figures 4, 5 and 10 as numbers: 25-step auto-regressive error against context length, and disentanglement.

For a context of c observations x_0 .. x_{c−1} the net predicts x̂_c, feeds it back, and so on for 25 steps; the error
is the mean absolute deviation between x̂_c .. x̂_{c+24} and x_c .. x_{c+24} (over steps and the 6 coordinates), averaged
over sequences. Re-running the net on every prefix would cost 25·Σ_c c² per sequence. Instead the memory for context c
is the shared true prefix (pairs t < c − 1, computed once) plus a small suffix of generated pairs, so all contexts of a
chunk run their 25 steps together, one ``retrieval`` call per step, with an additive mask that shows each context its
own prefix length and the suffix pairs generated so far. The result is exact (tests compare it with re-running).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from memory_mosaics.ops.retrieval import retrieval

from .model import MoonsNet

GEN_STEPS = 25


@torch.no_grad()
def rollout_error(model: MoonsNet, seq: Tensor, contexts: list[int], steps: int = GEN_STEPS, chunk: int = 16) -> Tensor:
    """Mean absolute deviation of ``steps`` auto-regressive predictions after each context length, (len(contexts),),
    averaged over the sequences seq (B, L, 6), L ≥ max(contexts) + steps."""
    if min(contexts) < 1 or max(contexts) + steps > seq.shape[1]:
        raise ValueError(f"contexts must lie in [1, {seq.shape[1] - steps}]")
    order = sorted(range(len(contexts)), key=lambda i: contexts[i])
    errors = torch.empty(len(contexts))
    for start in range(0, len(order), chunk):
        idx = order[start : start + chunk]
        errors[idx] = _rollout_chunk(model, seq, [contexts[i] for i in idx], steps)
    return errors


def _rollout_chunk(model: MoonsNet, seq: Tensor, cs: list[int], steps: int) -> Tensor:
    B, n, H = seq.shape[0], len(cs), model.n_heads
    c = torch.tensor(cs)
    Lp = max(cs) - 1  # longest true prefix of stored pairs in the chunk
    keys = model.keys(seq[:, : Lp + 1])  # (B, H, Lp+1, dh): k_t = W_φ x_t
    dh = keys.shape[-1]
    # memory slots: Lp true pairs shared by all contexts, then the `steps` generated pairs of each context
    mem_k = seq.new_zeros(B, n, H, Lp + steps, dh)
    mem_v = torch.zeros_like(mem_k)
    mem_k[:, :, :, :Lp] = keys[:, None, :, :Lp]
    mem_v[:, :, :, :Lp] = model.values(seq[:, 1 : Lp + 1])[:, None]  # v_t = W_ψ x_{t+1}
    visible = torch.zeros(n, Lp + steps, dtype=torch.bool)
    visible[:, :Lp] = torch.arange(Lp) < (c[:, None] - 1)  # context c stores the true pairs t < c − 1
    query = keys.transpose(1, 2)[torch.arange(B)[:, None], c - 1]  # (B, n, H, dh): k_{c−1} from the last observation
    target = seq[:, c[:, None] + torch.arange(steps)]  # (B, n, steps, 6): x_c .. x_{c+steps−1}
    err = torch.zeros(n)
    for j in range(steps):
        bias = torch.zeros(n, Lp + steps).masked_fill_(~visible, -math.inf)
        bias = bias[:, None, None].expand(n, H, 1, Lp + steps).reshape(1, n * H, 1, Lp + steps)
        y = retrieval(
            query.reshape(B, n * H, 1, dh),
            mem_k.view(B, n * H, Lp + steps, dh),
            mem_v.view(B, n * H, Lp + steps, dh),
            lookahead=None,
            scale=model.beta,
            bias=bias,
        ).view(B, n, H, 1, dh)
        empty = ~visible.any(1)  # a context of one observation predicts from an empty memory: y = 0
        y = y.masked_fill(empty[None, :, None, None, None], 0.0)
        x_hat = model.output(y).squeeze(-2)  # (B, n, 6): prediction of x_{c+j}
        err += (x_hat - target[:, :, j]).abs().mean((0, 2))
        # store the pair (k_{c−1+j}, W_ψ x̂_{c+j}) and query with the key of the prediction
        mem_k[:, :, :, Lp + j] = query
        mem_v[:, :, :, Lp + j] = model.values(x_hat[:, :, None]).squeeze(-2)
        visible[:, Lp + j] = True
        query = model.keys(x_hat[:, :, None]).squeeze(-2)
    return err / steps


@torch.no_grad()
def rollout_error_naive(model: MoonsNet, seq: Tensor, context: int, steps: int = GEN_STEPS) -> float:
    """Reference (tests only): re-run the full network on the growing sequence at every step."""
    x = seq[:, :context]
    for _ in range(steps):
        x = torch.cat([x, model(x)[:, -1:]], 1)
    return (x[:, context:] - seq[:, context : context + steps]).abs().mean().item()


def permutation_distance(w: Tensor) -> tuple[float, list[int]]:
    """How far a complex matrix (3, 3, 2) is from "one input per output": the moduli |W|, each row normalised to sum 1
    (scale and phase are free), against the nearest permutation matrix P; ‖A − P‖_F / √(2n) lies in [0, 1] (0: a
    permutation up to phases and row scales, 0.58: all moduli equal). Returns (distance, perm) with row i → column
    perm[i]."""
    a = w.detach().double().norm(dim=-1)
    a = a / a.sum(1, keepdim=True).clamp_min(1e-12)
    n = a.shape[0]
    best = min(
        (float((a - torch.eye(n, dtype=a.dtype)[list(p)]).norm()) / math.sqrt(2 * n), list(p))
        for p in itertools.permutations(range(n))
    )
    return best


def disentanglement(model: MoonsNet) -> dict:
    """Distances of W_φ, W_ψ, W_z to permutations, and whether they route moon m → head h → moon m consistently
    (W_φ and W_ψ read the same moon into a head, W_z writes that head back to the same moon). ``score`` is the largest
    of the three distances (0 is the paper's Figure 10)."""
    out: dict = {}
    for name in ("W_phi", "W_psi", "W_z"):
        d, perm = permutation_distance(getattr(model, name))
        out[name] = {"distance": d, "perm": perm}
    phi, psi, z = (out[k]["perm"] for k in ("W_phi", "W_psi", "W_z"))
    out["consistent"] = phi == psi and all(z[phi[h]] == h for h in range(len(phi)))
    out["score"] = max(out[k]["distance"] for k in ("W_phi", "W_psi", "W_z"))
    return out
