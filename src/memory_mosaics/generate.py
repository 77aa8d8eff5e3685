"""Generation on top of streaming: prefill the prompt once, then one token at a time against the memory state.

Both models stream; a GPT with learned positions cannot go past its ``block_size``, so for it the window slides and the
last ``block_size`` tokens are re-run (the only case where generation re-reads the context).
"""

from __future__ import annotations

import torch
from torch import Tensor

from memory_mosaics.models.base import LanguageModel
from memory_mosaics.state import ModelState


def check_sampling(temperature: float, top_k: int | None = None, top_p: float | None = None) -> None:
    """Refuse sampling settings that mean nothing (callers check before any work is done)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 (None: no top-k filter), got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (None: no nucleus filter), got {top_p}")


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample one token per row of ``logits`` (B, V): temperature (0: the most likely token), then top-k, then nucleus
    (top-p) filtering."""
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # keep the smallest prefix whose mass reaches top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


def _check_request(model: LanguageModel, idx: Tensor, max_new_tokens: int) -> None:
    """Refuse a prompt the model cannot read, once per call (the forward pass does not check token ids: that would
    cost a device synchronisation per training step)."""
    if idx.dim() != 2 or idx.shape[1] == 0:
        raise ValueError(f"idx must be a non-empty (batch, time) tensor of token ids, got shape {tuple(idx.shape)}")
    vocab = model.config.vocab_size
    low, high = idx.min().item(), idx.max().item()
    if low < 0 or high >= vocab:
        raise ValueError(f"prompt token id {low if low < 0 else high} is outside the model's vocabulary [0, {vocab})")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")


class _Stream:
    """Feeds tokens to a model, keeps the next-token logits; slides the window where the context is bounded."""

    def __init__(self, model: LanguageModel, prompt: Tensor) -> None:
        self.model, self.tokens = model, prompt
        self.window = model.max_context
        self.state: ModelState | None = model.init_state()
        self.logits = self._run(prompt)

    def _run(self, new: Tensor) -> Tensor:
        if self.window is not None and self.tokens.shape[1] > self.window:
            self.state = None  # learned positions end here: re-read the last window
            return self.model(self.tokens[:, -self.window :])[0][:, -1]
        if self.state is None:
            raise RuntimeError("stream lost its state")
        return self.model(new, state=self.state)[0][:, -1]

    def push(self, token: Tensor) -> Tensor:
        self.tokens = torch.cat([self.tokens, token[:, None]], dim=1)
        self.logits = self._run(token[:, None])
        return self.logits

    def reorder(self, index: Tensor) -> None:
        self.tokens = self.tokens.index_select(0, index)
        if self.state is not None:
            self.state.reorder(index)


@torch.no_grad()
def generate(
    model: LanguageModel,
    idx: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    seed: int | None = None,
    eos_token: int | None = None,
) -> Tensor:
    """Continue the prompts ``idx`` (B, T); returns prompt + continuation (B, T + n). Rows that produced
    ``eos_token`` are padded with it and leave the stream (they cost nothing more, and a model that reads each document
    alone is never fed their end-of-text). ``seed`` makes sampling reproducible."""
    _check_request(model, idx, max_new_tokens)
    check_sampling(temperature, top_k, top_p)
    if max_new_tokens == 0:
        return idx.clone()
    gen = None
    if seed is not None:
        gen = torch.Generator(device=idx.device).manual_seed(seed)
    stream = _Stream(model, idx)
    new = idx.new_full((idx.shape[0], max_new_tokens), 0 if eos_token is None else eos_token)
    live = torch.arange(idx.shape[0], device=idx.device)  # the output row of each row of the stream
    for i in range(max_new_tokens):
        nxt = sample_next(stream.logits, 0.0 if greedy else temperature, top_k, top_p, gen)
        new[live, i] = nxt
        if eos_token is not None and bool((nxt == eos_token).any()):
            going = (nxt != eos_token).nonzero().squeeze(1)
            if going.numel() == 0:
                break
            live, nxt = live[going], nxt[going]
            stream.reorder(going)
        if i == max_new_tokens - 1:
            break
        stream.push(nxt)
    return torch.cat([idx, new[:, : i + 1]], dim=1)


@torch.no_grad()
def beam_search(
    model: LanguageModel,
    idx: Tensor,
    max_new_tokens: int,
    num_beams: int = 2,
    eos_token: int | None = None,
    length_penalty: float = 1.0,
) -> Tensor:
    """Beam search (the paper's qualitative evaluation uses width 2). Each prompt row keeps ``num_beams`` hypotheses in
    one batch; the memory state is reordered along with the beams. Returns the best hypothesis per prompt; finished
    hypotheses (ending in ``eos_token``) are scored by log-probability / length**length_penalty."""
    _check_request(model, idx, max_new_tokens)
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    if max_new_tokens == 0:
        return idx.clone()
    B, T0 = idx.shape
    K = num_beams
    stream = _Stream(model, idx.repeat_interleave(K, dim=0))
    scores = torch.full((B, K), float("-inf"), device=idx.device)
    scores[:, 0] = 0.0  # all beams start identical: only the first may expand at the first step
    finished: list[list[tuple[float, Tensor]]] = [[] for _ in range(B)]
    for step in range(max_new_tokens):
        logp = stream.logits.float().log_softmax(-1).view(B, K, -1)
        V = logp.shape[-1]
        cand = (scores.unsqueeze(-1) + logp).view(B, K * V)
        top_scores, top_idx = cand.topk(2 * K, dim=-1)  # 2K so that K live beams survive eos
        beam_of, token_of = top_idx // V, top_idx % V
        new_scores = torch.full((B, K), float("-inf"), device=idx.device)
        new_beam = torch.zeros(B, K, dtype=torch.long, device=idx.device)
        new_token = torch.zeros(B, K, dtype=torch.long, device=idx.device)
        for b in range(B):
            n = 0
            for s, beam, tok in zip(top_scores[b].tolist(), beam_of[b].tolist(), token_of[b].tolist(), strict=True):
                if s == float("-inf"):
                    break
                if eos_token is not None and tok == eos_token:
                    seq = torch.cat([stream.tokens[b * K + beam, T0:], torch.tensor([tok], device=idx.device)])
                    finished[b].append((s / len(seq) ** length_penalty, seq))
                    continue
                new_scores[b, n], new_beam[b, n], new_token[b, n] = s, beam, tok
                n += 1
                if n == K:
                    break
        order = (torch.arange(B, device=idx.device)[:, None] * K + new_beam).view(-1)
        stream.reorder(order)
        scores = new_scores
        if step == max_new_tokens - 1:
            stream.tokens = torch.cat([stream.tokens, new_token.view(-1, 1)], dim=1)
        else:
            stream.push(new_token.view(-1))
    out = []
    for b in range(B):
        for k in range(K):
            if scores[b, k] > float("-inf"):
                seq = stream.tokens[b * K + k, T0:]
                finished[b].append((scores[b, k].item() / len(seq) ** length_penalty, seq))
        best = max(finished[b], key=lambda x: x[0])[1]
        out.append(best)
    width = max(len(s) for s in out)
    pad = eos_token if eos_token is not None else 0
    rows = [torch.cat([s, s.new_full((width - len(s),), pad)]) for s in out]
    return torch.cat([idx, torch.stack(rows)], dim=1)
