"""Tables 4 and 5: continuations of the 24 Eldan & Li prompts by beam search of width 2, the architectures side by side
(with the paper's 18-block continuations, where the prompts file has them, for reference)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from memory_mosaics.cli.types import natural, positive
from memory_mosaics.experiments.language.common import (
    add_checkpoint_arguments,
    load_checkpoints,
    md_table,
    write_outputs,
)

NAME = "prompts"
PAPER_FIELDS = {
    "paper_transformer_nb18": "paper: transformer, 18 blocks",
    "paper_mosaic_nb18": "paper: Mosaic, 18 blocks",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_checkpoint_arguments(p, "checkpoints or run folders, one column each, optionally LABEL=PATH")
    p.add_argument("--prompts", required=True, metavar="JSONL", help="e.g. ../shared/prompts/eldan_li_24.jsonl")
    p.add_argument("--field", default="prompt", help="the prompt's field (default: prompt)")
    p.add_argument("--beams", type=positive, default=2, help="beam width (the paper: 2)")
    p.add_argument("--max-new-tokens", type=natural, default=40)
    p.add_argument("--limit", type=natural, default=0, help="only the first N prompts (0 = all)")
    p.add_argument("--name", default=NAME, help="output file stem (e.g. prompts_nb1 for Table 5)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from memory_mosaics.generate_cli import complete, read_prompts
    from memory_mosaics.train.evaluate import load_tokenizer_for

    rows = read_prompts(argparse.Namespace(prompt=[], prompts=args.prompts, field=args.field))
    if args.limit:
        rows = rows[: args.limit]
    cks = load_checkpoints(args.checkpoints, args.device)
    decode = argparse.Namespace(mode="beam", beams=args.beams, max_new_tokens=args.max_new_tokens, stop_at_eot=True)
    for ck in cks:
        tokenizer = load_tokenizer_for(ck.path, ck.meta, None)
        for row in rows:
            row.setdefault("completions", {})[ck.label] = complete(ck.model, tokenizer, row[args.field], decode)
    paper = [f for f in PAPER_FIELDS if any(f in r for r in rows)]
    header = ["#", "prompt", *[c.label for c in cks], *[PAPER_FIELDS[f] for f in paper]]
    table = [
        [
            i + 1,
            r[args.field],
            *[" ".join(r["completions"][c.label].split()) for c in cks],
            *[r.get(f, "") for f in paper],
        ]
        for i, r in enumerate(rows)
    ]
    section = [
        f"## Story prompts (Tables 4 and 5){'' if args.name == NAME else f': {args.name}'}",
        "",
        f"Beam search of width {args.beams}, at most {args.max_new_tokens} new tokens, stopped at the end of text. "
        f"Prompts: `{Path(args.prompts).name}`. The paper truncated its continuations by hand.",
        "",
        md_table(header, table),
    ]
    numbers = {
        "table": "4, 5",
        "beams": args.beams,
        "max_new_tokens": args.max_new_tokens,
        "models": [c.describe() for c in cks],
        "rows": rows,
    }
    write_outputs(args.out, args.name, numbers, "\n".join(section))
    (Path(args.out) / f"{args.name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return numbers
