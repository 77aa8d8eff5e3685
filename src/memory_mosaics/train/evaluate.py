"""``mosaic eval``: validation loss of a checkpoint on a token shard or a text file (overall and per position)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from memory_mosaics.cli.types import device_name, natural, positive
from memory_mosaics.data.sources import read_utf8
from memory_mosaics.devices import pick_device
from memory_mosaics.models import LanguageModel, load_pretrained
from memory_mosaics.train import checkpoint as ckpt_io
from memory_mosaics.train.batches import default_val_split, eval_starts, open_split, windows

HELP = "validation loss of a checkpoint on a token shard or a text file (overall and per position)"
EOT_MARKER = "<|endoftext|>"


# ---- loading (shared with `mosaic generate`) ------------------------------------------------------------------------
def load_checkpoint(path: str | Path, device: str = "auto") -> tuple[Path, LanguageModel, dict[str, Any] | None]:
    """(checkpoint folder, model in eval mode, the dataset meta it was trained on or None). ``path`` may be a run
    folder (its newest good checkpoint is used)."""
    ckpt = ckpt_io.resolve(path)
    model = load_pretrained(ckpt, map_location=pick_device(device)).eval()
    meta_path = ckpt / ckpt_io.DATA_META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    if meta is not None:
        meta["_directory"] = str(ckpt)  # a copied tokenizer file is relative to the checkpoint
    return ckpt, model, meta


def load_tokenizer_for(ckpt: Path, meta: dict[str, Any] | None, override: str | None) -> Any:
    """The tokenizer of a prepared dataset ``override``, else the one recorded in (or copied into) the checkpoint."""
    from memory_mosaics.data.tokenizer import load_tokenizer

    if override:
        return load_tokenizer(override)
    if meta is None:
        raise ValueError(f"{ckpt} records no tokenizer ({ckpt_io.DATA_META} missing); pass --tokenizer DATASET_DIR")
    return load_tokenizer(meta)


def check_context(ckpt: Path, model: LanguageModel, context: int) -> None:
    if model.max_context is not None and context > model.max_context:
        raise ValueError(
            f"{ckpt / 'config.json'}: a context of {context} tokens is longer than this GPT's {model.max_context} "
            "learned positions; use --context <= block_size (or a model with rope/alibi/none positions, or a Memory "
            "Mosaic, which has no positions)"
        )


def check_vocab(
    ckpt: Path, model: LanguageModel, ckpt_meta: dict[str, Any] | None, data_meta: dict, where: str
) -> None:
    """A token shard written with another tokenizer than the checkpoint's gives one clear error."""
    tok = data_meta.get("tokenizer", {})
    if int(tok.get("vocab_size", 0)) > model.config.vocab_size:
        raise ValueError(
            f"vocabulary mismatch: {where} has {tok['vocab_size']} token ids but {ckpt / 'config.json'} has "
            f"vocab_size {model.config.vocab_size} (a checkpoint from another tokenizer?)"
        )
    if ckpt_meta is not None:
        mine = {k: ckpt_meta.get("tokenizer", {}).get(k) for k in ("kind", "vocab_size", "eot_id")}
        theirs = {k: tok.get(k) for k in ("kind", "vocab_size", "eot_id")}
        if mine != theirs:
            raise ValueError(
                f"vocabulary mismatch: {ckpt / ckpt_io.DATA_META} says the model was trained with tokenizer {mine}, "
                f"but {where} uses {theirs}"
            )


def encode_text(path: Path, tokenizer: Any) -> np.ndarray:
    """A .txt file (documents separated by <|endoftext|>) or a .jsonl file (field "text") as one token stream."""
    text = read_utf8(path)
    if path.suffix in (".jsonl", ".ndjson"):
        docs = [json.loads(ln) for ln in text.splitlines() if ln.strip()]
        docs = [d if isinstance(d, str) else d["text"] for d in docs]
    else:
        docs = [d.strip() for d in text.split(EOT_MARKER)]
    ids: list[int] = []
    for doc in docs:
        if doc:
            ids.extend(tokenizer.encode(doc))
            ids.append(tokenizer.eot_id)
    return np.asarray(ids, dtype=np.int64)


@torch.no_grad()
def evaluate(
    model: LanguageModel, tokens: np.ndarray, context: int, batch_size: int = 8, max_windows: int = 0
) -> dict[str, Any]:
    """Mean loss over consecutive non-overlapping windows of ``context`` tokens, and the mean loss at each position."""
    device = next(model.parameters()).device
    starts = eval_starts(len(tokens), context, max_windows)
    per_pos = torch.zeros(context, dtype=torch.float64)
    for i in range(0, len(starts), batch_size):
        x, y = windows(tokens, starts[i : i + batch_size], context)
        logits, _ = model(x.to(device))
        loss = F.cross_entropy(logits.float().transpose(1, 2), y.to(device), reduction="none")  # (B, T)
        per_pos += loss.sum(0).double().cpu()
    per_pos /= len(starts)
    loss = float(per_pos.mean())
    return {
        "loss": loss,
        "ppl": math.exp(min(loss, 50.0)),
        "tokens": len(starts) * context,
        "windows": len(starts),
        "context": context,
        "per_position": per_pos.tolist(),
    }


# ---- command line ---------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint folder (ckpt-XXXXXXX) or a run folder (its newest checkpoint)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--data", metavar="DIR", help="a prepared dataset (default: the one the run trained on)")
    src.add_argument("--text", metavar="FILE", help="a .txt (documents separated by <|endoftext|>) or .jsonl file")
    parser.add_argument("--split", default="", help="split of --data (default: its validation split)")
    parser.add_argument(
        "--tokenizer", metavar="DIR", help="prepared dataset whose tokenizer reads --text (default: the checkpoint's)"
    )
    parser.add_argument("--context", type=natural, default=0, help="window length (default: the model's block_size)")
    parser.add_argument("--batch-size", type=positive, default=8, help="windows per forward")
    parser.add_argument("--max-windows", type=natural, default=0, help="evaluate at most this many windows (0 = all)")
    parser.add_argument("--per-position", metavar="CSV", help="write the mean loss at each position (Figure 8)")
    parser.add_argument("--json", metavar="FILE", help="write the result as JSON")
    parser.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda, cuda:N, mps")


def run(args: argparse.Namespace) -> int:
    try:
        result = _run(args)
    except (ValueError, OSError) as e:  # CheckpointError, ShardError and TokenizerError are ValueErrors
        print(f"mosaic eval: error: {e}", file=sys.stderr)
        return 2
    print(
        f"{result['source']}: loss {result['loss']:.4f}  ppl {result['ppl']:.2f}  ({result['tokens']:,} tokens in "
        f"{result['windows']} windows of {result['context']})"
    )
    return 0


def _run(args: argparse.Namespace) -> dict[str, Any]:
    for output in (args.per_position, args.json):  # a folder that cannot be made fails now, not after the work
        if output:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
    ckpt, model, ckpt_meta = load_checkpoint(args.checkpoint, args.device)
    context = args.context or model.config.block_size
    check_context(ckpt, model, context)
    if args.text:
        path = Path(args.text)
        if not path.is_file():
            raise FileNotFoundError(f"no text file {path}")
        tokenizer = load_tokenizer_for(ckpt, ckpt_meta, args.tokenizer)
        if args.tokenizer:
            check_vocab(
                ckpt,
                model,
                ckpt_meta,
                json.loads((Path(args.tokenizer) / "meta.json").read_text()),
                f"{args.tokenizer}/meta.json",
            )
        tokens, source = encode_text(path, tokenizer), str(path)
    else:
        data = args.data or run_data_dir(ckpt)
        split = args.split or default_val_split(data)
        if split is None:
            raise ValueError(f"{data} has no validation split; name one with --split")
        shard = open_split(data, split)
        check_vocab(ckpt, model, ckpt_meta, shard.meta, f"{data}/meta.json")
        tokens, source = shard.tokens, f"{data}:{split}"
    if len(tokens) <= context:
        raise ValueError(f"{source} has {len(tokens)} tokens, not enough for one window of {context} (+1)")
    result = {
        "source": source,
        "checkpoint": str(ckpt),
        **evaluate(model, tokens, context, args.batch_size, args.max_windows),
    }
    if args.per_position:
        with open(args.per_position, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["position", "loss"])
            w.writerows(enumerate(result["per_position"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


def run_data_dir(ckpt: Path) -> str:
    """The data directory of the training run a checkpoint belongs to (from the run folder's run.json)."""
    run_file = ckpt.parent / "run.json"
    if run_file.is_file():
        return json.loads(run_file.read_text())["data"]["directory"]
    raise ValueError(f"{ckpt} is not inside a run folder with run.json; pass --data or --text")
