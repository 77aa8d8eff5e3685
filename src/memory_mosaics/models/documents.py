"""Document-wise masking: no memory reads across a document boundary, as the v2 paper trains (its document-wise
attention mask).

A model whose config sets ``doc_token`` (the end-of-text token that closes each document of a packed stream) reads
every document of a sequence as if it were alone: its contextual memories (or attention) store nothing of the
documents before, its leaky and gated key states start afresh, a GPT's positions start at 0. The parallel form does
this by construction, for every architecture at once: it cuts the rows into their documents, runs them as a batch of
sequences right-padded to a common length (every model here is causal, so padding never reaches a real position) and
puts the logits back in place. Documents are grouped by length (powers of two from ``MIN_GROUP``) so that padding at
most doubles the work; the attention of a document of L tokens costs L², not the T² of a dense mask. Streaming
(``LanguageModel.forward`` with a state) resets the state where a document starts.
"""

from __future__ import annotations

import torch
from torch import Tensor

MIN_GROUP = 32  # documents of up to this many tokens run in one group (many short documents, one forward)


def document_starts(idx: Tensor, doc_token: int, after_end: bool = True) -> Tensor:
    """(B, T) bool: True where a document starts, at the token after each ``doc_token`` (and at position 0 when
    ``after_end``, i.e. when what came before ended a document or nothing did)."""
    starts = torch.zeros_like(idx, dtype=torch.bool)
    starts[:, 0] = after_end
    starts[:, 1:] = idx[:, :-1] == doc_token
    return starts


def document_groups(idx: Tensor, doc_token: int) -> list[tuple[Tensor, Tensor]]:
    """The documents of ``idx`` (B, T), grouped by length: for each group, ``index`` (n, L) into the flattened
    (B·T) tokens, one document per row from its first token on (padded by repeating its last token), and ``valid``
    (n, L), False on the padding. Each position of idx is valid in exactly one row of one group."""
    B, T = idx.shape
    first = document_starts(idx, doc_token).flatten().nonzero().squeeze(1)  # every row begins a document
    lengths = torch.diff(first, append=first.new_tensor([B * T]))
    group = torch.log2(lengths.clamp_min(MIN_GROUP).double()).ceil().long()
    out = []
    for g in torch.unique(group).tolist():
        sel = (group == g).nonzero().squeeze(1)
        n, L = lengths[sel], int(lengths[sel].max())
        offset = torch.arange(L, device=idx.device)
        index = first[sel, None] + torch.minimum(offset, n[:, None] - 1)
        out.append((index, offset < n[:, None]))
    return out
