"""``mosaic convert``: import a checkpoint of the authors' nanoMosaics code as a Memory Mosaic model folder (format in
``docs/authors_checkpoints.md``)."""

from __future__ import annotations

import argparse
import sys

from memory_mosaics.cli.types import out_folder

HELP = "Convert a checkpoint of the authors' nanoMosaics code (ckpt.pt) into a Memory Mosaic (save_pretrained folder)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="the authors' ckpt.pt (nanoMosaics train.py output)")
    parser.add_argument(
        "--out", type=out_folder, required=True, metavar="DIR", help="output folder (config.json, model.safetensors)"
    )
    parser.add_argument(
        "--key-scale-max", default="log65535", metavar="K",
        help="the key-scale clamp of the code that trained it: log65535 (default, the documented one) or a number "
        "(one released version of mosaic_model.py clamps at 5)",
    )  # fmt: skip
    vocab = parser.add_mutually_exclusive_group()
    vocab.add_argument("--vocab-size", type=int, help="refuse a checkpoint whose vocabulary does not fit this one")
    vocab.add_argument("--data", metavar="DIR", help="a prepared dataset whose tokenizer the checkpoint must fit")


def run(args: argparse.Namespace) -> int:
    from memory_mosaics.data.convert import ConversionError, convert_checkpoint
    from memory_mosaics.data.shards import ShardError, read_meta
    from memory_mosaics.layers.features import MAX_LOG_SCALE

    try:
        k = MAX_LOG_SCALE if args.key_scale_max in ("log65535", "log(65535)") else float(args.key_scale_max)
    except ValueError:
        print(f"mosaic convert: error: --key-scale-max: not a number: {args.key_scale_max!r}", file=sys.stderr)
        return 2
    try:
        expected = args.vocab_size
        if args.data:
            expected = int(read_meta(args.data)["tokenizer"]["vocab_size"])
        model = convert_checkpoint(args.checkpoint, args.out, k, expected)
    except (ConversionError, ShardError) as e:
        print(f"mosaic convert: error: {e}", file=sys.stderr)
        return 1
    _write_tokenizer(args, model.config.vocab_size)
    c = model.config
    print(
        f"{args.out}: Memory Mosaic, {c.n_layer} blocks, d={c.n_embd}, {c.n_head} heads, vocab {c.vocab_size}, "
        f"pmem {c.pmem_count}x{c.pmem_size}, {model.num_params() / 1e6:.2f}M non-embedding parameters"
    )
    return 0


def _write_tokenizer(args: argparse.Namespace, vocab_size: int) -> None:
    """The tokenizer beside the weights, for ``AutoTokenizer.from_pretrained(out)``: the dataset's (``--data``), else
    GPT-2's for a GPT-2-sized vocabulary (the authors' checkpoints), when its files are found."""
    import shutil
    from pathlib import Path

    from memory_mosaics.checkpoints import TOKENIZER, write_hf_tokenizer
    from memory_mosaics.data.shards import read_meta
    from memory_mosaics.data.tokenizer import GPT2_EOT_ID, GPT2_VOCAB
    from memory_mosaics.models.base import VOCAB_PADDING

    if args.data:
        tok = dict(read_meta(args.data)["tokenizer"])
        if tok.get("path"):
            src = Path(tok["path"]) if Path(tok["path"]).is_absolute() else Path(args.data) / tok["path"]
            shutil.copyfile(src, Path(args.out) / TOKENIZER)
    elif GPT2_VOCAB <= vocab_size < GPT2_VOCAB + VOCAB_PADDING:
        tok = {"kind": "gpt2", "eot_id": GPT2_EOT_ID}
    else:
        return
    if not write_hf_tokenizer(Path(args.out), tok):
        print(f"mosaic convert: note: no {tok['kind']} tokenizer files found; {args.out} has no tokenizer")
