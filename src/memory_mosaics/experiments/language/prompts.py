"""Tables 4 and 5: continuations of the 24 Eldan & Li prompts by beam search of width 2, the architectures side by side
(with the paper's 18-block continuations, where the prompts file has them, for reference)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from memory_mosaics.experiments.language.common import Checkpoint, md_table, write_outputs

NAME = "prompts"
PAPER_FIELDS = {
    "paper_transformer_nb18": "paper: transformer, 18 blocks",
    "paper_mosaic_nb18": "paper: Mosaic, 18 blocks",
}


def prompts(
    checkpoints: list[Checkpoint],
    rows: list[dict[str, Any]],
    out: Path,
    prompts_file: str | Path,
    field: str = "prompt",
    beams: int = 2,
    max_new_tokens: int = 40,
    name: str = NAME,
) -> dict[str, Any]:
    """Each model's beam-search continuation of the ``field`` of each row (rows of ``read_prompts``, read from
    ``prompts_file``), added to the row under ``completions``; written to ``out`` as ``<name>.json/.md/.jsonl``."""
    from memory_mosaics.checkpoints import checkpoint_tokenizer
    from memory_mosaics.completion import Decoding, complete

    decoding = Decoding(mode="beam", beams=beams, max_new_tokens=max_new_tokens, stop_at_eot=True)
    for ck in checkpoints:
        tokenizer = checkpoint_tokenizer(ck.path, ck.meta, None)
        for row in rows:
            row.setdefault("completions", {})[ck.label] = complete(ck.model, tokenizer, row[field], decoding)
    section = [
        f"## Story prompts (Tables 4 and 5){'' if name == NAME else f': {name}'}",
        "",
        f"Beam search of width {beams}, at most {max_new_tokens} new tokens, stopped at the end of text. "
        f"Prompts: `{Path(prompts_file).name}`. The paper truncated its continuations by hand.",
        "",
        prompts_table(checkpoints, rows, field),
    ]
    numbers = {
        "table": "4, 5",
        "beams": beams,
        "max_new_tokens": max_new_tokens,
        "models": [c.describe() for c in checkpoints],
        "rows": rows,
    }
    write_outputs(out, name, numbers, "\n".join(section))
    (Path(out) / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return numbers


def prompts_table(checkpoints: list[Checkpoint], rows: list[dict[str, Any]], field: str) -> str:
    """One row per prompt, one column per model, then the paper's continuations where the file has them."""
    paper = [f for f in PAPER_FIELDS if any(f in r for r in rows)]
    header = ["#", "prompt", *[c.label for c in checkpoints], *[PAPER_FIELDS[f] for f in paper]]
    table = [
        [
            i + 1,
            r[field],
            *[" ".join(r["completions"][c.label].split()) for c in checkpoints],
            *[r.get(f, "") for f in paper],
        ]
        for i, r in enumerate(rows)
    ]
    return md_table(header, table)
