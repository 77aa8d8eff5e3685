"""Document-wise masking: a packed sequence read with ``doc_token`` equals its documents read one by one, in the
forward, the backward and streaming, for every architecture."""

from __future__ import annotations

import pytest
import torch

from memory_mosaics.models import build_model
from memory_mosaics.models.documents import MIN_GROUP, document_groups, document_starts

EOT = 0
SHAPE = dict(vocab_size=23, block_size=64, n_layer=2, n_head=2, n_embd=16, doc_token=EOT)
ARCHS = {
    "mosaic": ("mosaic", {}),
    "mosaic-mlp": ("mosaic", dict(persistent="mlp")),
    "gpt": ("gpt", {}),  # learned positions: they restart at 0 in each document
    "gpt-rope": ("gpt", dict(pos="rope")),
    "llama": ("llama", {}),
    "llama-split": ("llama", dict(split=True, short_window=6, long_delay=3)),
    "mosaic2": ("mosaic2", dict(short_window=6, long_delay=3)),
    "mosaic2-memory": ("mosaic2", dict(short_window=6, long_delay=3, persistent="memory")),
}
LENGTHS = (5, 40, 1, 12, 3)  # the lone EOT of a 1-token document, a document longer than MIN_GROUP


def documents(generator: torch.Generator, lengths: tuple[int, ...] = LENGTHS) -> list[torch.Tensor]:
    """Documents of ``lengths`` tokens, each ending with the EOT (the last one cut short: a window ends mid-way)."""
    docs = [torch.randint(1, SHAPE["vocab_size"], (n,), generator=generator) for n in lengths]
    docs = [torch.cat([d[:-1], torch.tensor([EOT])]) for d in docs]
    docs[-1] = docs[-1][:-1] if len(docs[-1]) > 1 else docs[-1]
    return docs


def model(case: str) -> torch.nn.Module:
    torch.manual_seed(0)
    arch, kw = ARCHS[case]
    return build_model(arch, **SHAPE, **kw).eval()


@pytest.mark.parametrize("case", list(ARCHS))
def test_a_packed_sequence_reads_as_its_documents_alone(case: str) -> None:
    m = model(case)
    docs = documents(torch.Generator().manual_seed(1))
    packed = torch.cat(docs)[None]
    targets = torch.randint(0, SHAPE["vocab_size"], packed.shape, generator=torch.Generator().manual_seed(2))
    logits, loss = m(packed, targets)
    alone = torch.cat([m(d[None])[0] for d in docs], dim=1)
    torch.testing.assert_close(logits, alone, rtol=1e-5, atol=1e-5)
    # the backward through the regrouping: the gradient of the summed loss is the sum of the documents' gradients
    (loss * packed.numel()).backward()
    packed_grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad()
    start = 0
    for d in docs:
        t = targets[:, start : start + len(d)]
        start += len(d)
        (m(d[None], t)[1] * t.numel()).backward()
    assert packed_grads.keys() == {n for n, p in m.named_parameters() if p.grad is not None}
    for n, p in m.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(packed_grads[n], p.grad, rtol=1e-4, atol=1e-5, msg=n)


@pytest.mark.parametrize("case", list(ARCHS))
def test_without_a_boundary_the_mask_changes_nothing(case: str) -> None:
    m = model(case)
    idx = torch.randint(1, SHAPE["vocab_size"], (3, 20), generator=torch.Generator().manual_seed(3))
    plain = model(case)
    plain.config.doc_token = None
    torch.testing.assert_close(m(idx)[0], plain(idx)[0])


@pytest.mark.parametrize("case", list(ARCHS))
@pytest.mark.parametrize("chunks", [(1,), (7, 1, 9, 1, 1, 40)])  # one token at a time; chunks across the boundaries
def test_streaming_resets_at_each_document(case: str, chunks: tuple[int, ...]) -> None:
    m = model(case)
    packed = torch.cat(documents(torch.Generator().manual_seed(4)))[None].repeat(2, 1)  # two rows, the same documents
    packed[1, packed[1] != EOT] = (packed[1, packed[1] != EOT] % 22) + 1  # other tokens, the same boundaries
    with torch.no_grad():
        full = m(packed)[0]
        state, out, t, i = m.init_state(), [], 0, 0
        while t < packed.shape[1]:
            n = chunks[i % len(chunks)]
            out.append(m(packed[:, t : t + n], state=state)[0])
            t, i = t + n, i + 1
    torch.testing.assert_close(torch.cat(out, dim=1), full, rtol=1e-5, atol=1e-5)
    assert state.position == LENGTHS[-1] - 1  # the last document's tokens only


def test_streamed_rows_must_end_their_documents_together() -> None:
    m = model("mosaic2")
    idx = torch.tensor([[5, EOT, 6], [5, 6, 7]])
    with pytest.raises(ValueError, match="streamed rows must end their documents at the same positions"):
        m(idx, state=m.init_state())
    assert m(idx)[0].shape == (2, 3, SHAPE["vocab_size"])  # the parallel form reads each row's documents


@pytest.mark.parametrize("arch", ["mosaic", "gpt", "llama", "mosaic2"])
def test_a_doc_token_outside_the_vocabulary_is_refused(arch: str) -> None:
    with pytest.raises(ValueError, match=r"doc_token must be a token id in \[0, vocab_size = 23\), got 23"):
        build_model(arch, **{**SHAPE, "doc_token": 23})


def test_document_groups_cover_every_position_once_with_bounded_padding() -> None:
    g = torch.Generator().manual_seed(5)
    for _ in range(20):
        idx = torch.randint(0, 4, (3, int(torch.randint(1, 300, (1,), generator=g))), generator=g)  # many EOTs (0)
        groups = document_groups(idx, EOT)
        covered = torch.cat([index[valid] for index, valid in groups])
        assert torch.equal(covered.sort().values, torch.arange(idx.numel()))
        starts = document_starts(idx, EOT).flatten()
        for index, valid in groups:
            assert starts[index[:, 0]].all()  # a row is one document from its first token
            assert not starts[index[:, 1:][valid[:, 1:]]].any()  # ... and never reaches into the next
            assert valid.numel() <= 2 * max(int(valid.sum()), MIN_GROUP * valid.shape[0])  # padding at most doubles


def test_document_starts() -> None:
    idx = torch.tensor([[3, EOT, EOT, 4, 5, EOT]])
    assert document_starts(idx, EOT).tolist() == [[True, False, True, True, False, False]]
    assert document_starts(idx, EOT, after_end=False)[0, 0].item() is False
