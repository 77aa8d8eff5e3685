"""Text in, text out: a prompt encoded, completed by ``generate`` or ``beam_search``, and decoded; and the prompt files
(JSON lines) that ``mosaic generate`` and ``mosaic paper prompts`` read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from memory_mosaics.data.sources import read_utf8
from memory_mosaics.generate import beam_search, check_sampling, generate
from memory_mosaics.models import LanguageModel

DECODING_MODES = ("greedy", "sample", "beam")


@dataclass(frozen=True)
class Decoding:
    """How to complete a prompt. The default is the paper's (Table 4): beam search of width 2."""

    mode: str = "beam"
    beams: int = 2
    max_new_tokens: int = 60
    temperature: float = 1.0  # sample only, as are top_k, top_p and seed
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    stop_at_eot: bool = True  # cut the completion at the end-of-text token

    def __post_init__(self) -> None:
        if self.mode not in DECODING_MODES:
            raise ValueError(f"decoding mode must be one of {DECODING_MODES}, got {self.mode!r}")
        if self.beams < 1 or self.max_new_tokens < 0:
            raise ValueError(f"beams must be >= 1 and max_new_tokens >= 0, got {self.beams} and {self.max_new_tokens}")
        if self.mode == "sample":
            check_sampling(self.temperature, self.top_k, self.top_p)


def complete(model: LanguageModel, tokenizer: Any, prompt: str, decoding: Decoding) -> str:
    """The text the model writes after ``prompt`` (without the prompt, cut at the end-of-text token if asked)."""
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError(f"the prompt {prompt!r} encodes to no tokens")
    device = next(model.parameters()).device
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    eot = tokenizer.eot_id if decoding.stop_at_eot else None
    if decoding.mode == "beam":
        out = beam_search(model, idx, decoding.max_new_tokens, num_beams=decoding.beams, eos_token=eot)
    else:
        out = generate(
            model,
            idx,
            decoding.max_new_tokens,
            temperature=decoding.temperature,
            top_k=decoding.top_k,
            top_p=decoding.top_p,
            greedy=decoding.mode == "greedy",
            seed=decoding.seed,
            eos_token=eot,
        )
    new = out[0, len(ids) :].tolist()
    if eot is not None and eot in new:
        new = new[: new.index(eot)]
    return tokenizer.decode(new)


def read_prompts(path: str | Path, field: str = "prompt") -> list[dict[str, Any]]:
    """The rows of a JSON-lines prompts file (a bare string is a row whose ``field`` it is); each must have a string
    ``field``. Errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no prompts file {path}")
    rows = []
    for n, line in enumerate(read_utf8(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n} is not JSON: {e}") from e
        row = {field: row} if isinstance(row, str) else row
        if not isinstance(row, dict) or not isinstance(row.get(field), str):
            raise ValueError(f"{path}:{n} has no string field {field!r}")
        rows.append(row)
    return rows
