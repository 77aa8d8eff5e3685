"""Everything written to or read from disk about a model, in one place.

A **model folder** holds ``config.json`` (the model type and its architecture config) and ``model.safetensors`` (the
weights; the tied head is stored once). ``LanguageModel.save_pretrained`` / ``from_pretrained`` and ``load_pretrained``
go through ``save_model`` / ``load_model`` here.

A **training checkpoint** ``ckpt-XXXXXXX/`` is a model folder plus ``trainer.pt`` (optimiser, schedule, RNG, data
position: plain tensors, dicts and numbers, loaded with ``torch.load(weights_only=True)``), ``data_meta.json`` (the
dataset's tokenizer, with a BPE tokenizer's file copied in as ``tokenizer.json``) and ``manifest.json`` (size and sha256
of every other file, written last). It is written into a hidden temporary folder and renamed into place, so
``ckpt-XXXXXXX`` either does not exist or is complete; the manifest then catches later damage (a truncated copy, a bad
disk). A good checkpoint is never overwritten: a damaged one of the same name is moved aside to
``ckpt-XXXXXXX.corrupt``.

Reading a checkpoint back for evaluation or sampling (``load_checkpoint``) also finds the tokenizer beside it and
checks that a token stream was written with the same vocabulary (``check_vocab``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from safetensors.torch import save_model as save_safetensors

from memory_mosaics.data.tokenizer import sha256_file
from memory_mosaics.devices import pick_device
from memory_mosaics.models import MODELS, LanguageModel
from memory_mosaics.models.base import VOCAB_PADDING
from memory_mosaics.models.legacy import upgrade_state_dict

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MANIFEST = "manifest.json"
TRAINER = "trainer.pt"
DATA_META = "data_meta.json"
TOKENIZER = "tokenizer.json"
RUN_FILE = "run.json"  # a training run's resolved configuration, beside its checkpoints
_NAME = re.compile(r"^ckpt-(\d{7,})$")
_TOKENIZER_FIELDS = ("kind", "vocab_size", "eot_id")  # what must agree between a model and a token stream
# Hugging Face names of each architecture (memory_mosaics.hf registers them): config.json's "model_type" is the one
# AutoConfig reads, "arch" ours. Ours cannot be HF's: "llama" is transformers' own.
HF_MODEL_TYPES = {
    "mosaic": ("memory_mosaic", "MemoryMosaicForCausalLM"),
    "mosaic2": ("memory_mosaic_v2", "MemoryMosaicV2ForCausalLM"),
    "gpt": ("memory_mosaics_gpt", "MosaicsGPTForCausalLM"),
    "llama": ("memory_mosaics_llama", "MosaicsLlamaForCausalLM"),
}


# ---- model folders --------------------------------------------------------------------------------------------------
def save_model(model: LanguageModel, directory: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory``; each file is written then renamed, so an
    interrupted save never leaves a half-written file under the final name."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"cannot save a checkpoint into {directory}: it is a file, not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    save_safetensors(model, str(tmp))
    tmp.replace(directory / WEIGHTS_FILE)
    meta = {"arch": model.model_type, "config": dataclasses.asdict(model.config), **hf_fields(model)}
    tmp = directory / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(directory / CONFIG_FILE)
    write_model_card(directory, model)  # save_training rewrites it with what training knows
    return directory


def hf_fields(model: LanguageModel) -> dict[str, Any]:
    """What ``transformers`` reads from config.json (``memory_mosaics.hf.MosaicsHFConfig``), beside our fields; none
    for a model with no ``transformers`` class (the recurrent baselines of ``models.recurrent``)."""
    c = model.config
    if model.model_type not in HF_MODEL_TYPES:
        return {}
    hf_type, class_name = HF_MODEL_TYPES[model.model_type]
    fields = {
        "model_type": hf_type,
        "architectures": [class_name],
        "vocab_size": c.vocab_size,
        "hidden_size": c.n_embd,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "tie_word_embeddings": model.lm_head.weight is model.wte.weight,
    }
    if model.max_context is not None:  # learned positions: tools (lm_eval) read the limit here
        fields["max_position_embeddings"] = model.max_context
    return fields


def read_config(directory: str | Path) -> tuple[str, dict[str, Any]]:
    """(model type, architecture config fields) of a model folder."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise FileNotFoundError(f"no checkpoint directory {directory}")
    if not path.is_file():
        raise FileNotFoundError(f"{directory} has no {CONFIG_FILE}; is it a directory written by save_pretrained?")
    try:
        meta = json.loads(path.read_text())
        # folders before the HF fields have no "arch"; the recurrent baselines' have no HF "model_type"
        return (meta["arch"] if "arch" in meta else meta["model_type"]), meta["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a valid model config: {e}") from e


def load_model(
    directory: str | Path,
    cls: type[LanguageModel] | None = None,
    vocab_size: int | None = None,
    map_location: str | torch.device = "cpu",
) -> LanguageModel:
    """The model a folder written by ``save_model`` holds (of class ``cls`` when given, else of the type it records).
    ``vocab_size``, the tokenizer's vocabulary, when given, must match the checkpoint's, up to padding of the embedding
    by fewer than VOCAB_PADDING rows. Weights written under earlier module names load too (``models.legacy``)."""
    directory = Path(directory)
    model_type, config = read_config(directory)
    if cls is None:
        if model_type not in MODELS:
            raise ValueError(f"{directory}: unknown model_type {model_type!r} (known: {sorted(MODELS)})")
        cls = MODELS[model_type]
    if model_type != cls.model_type:
        raise ValueError(f"{directory} holds a {model_type!r} model, not a {cls.model_type!r} model")
    if vocab_size is not None and not vocab_size <= config["vocab_size"] < vocab_size + VOCAB_PADDING:
        raise ValueError(
            f"vocabulary mismatch: {directory / CONFIG_FILE} has vocab_size {config['vocab_size']}, "
            f"but the tokenizer has {vocab_size} tokens (is this checkpoint from another tokenizer?)"
        )
    model = cls(cls.config_class(**config))
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"no weights file {weights}")
    try:
        _check_embedding_rows(weights, config["vocab_size"])
        state = upgrade_state_dict(model_type, load_file(str(weights), device=str(map_location)))
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(f"cannot load {weights}: {e}") from e
    tied = {"wte.weight", "lm_head.weight"}  # one tensor, stored under one of the two names
    missing = [m for m in missing if m not in tied or not tied & set(state)]
    if missing or unexpected:
        raise ValueError(f"{weights} does not fit a {cls.model_type} model: missing {missing}, unexpected {unexpected}")
    return model.to(map_location)


def _check_embedding_rows(weights: Path, vocab_size: int) -> None:
    with safe_open(str(weights), framework="pt") as f:
        for name in ("wte.weight", "lm_head.weight"):  # tied: safetensors stores one of the two
            if name in f.keys():  # noqa: SIM118 (safe_open has no __contains__)
                rows = f.get_slice(name).get_shape()[0]
                if rows != vocab_size:
                    raise ValueError(
                        f"vocabulary mismatch: {weights} has {rows} embedding rows but its config says "
                        f"vocab_size {vocab_size}"
                    )


def load_pretrained(directory: str | Path, **kwargs: Any) -> LanguageModel:
    """Load whichever model ``directory`` holds (see ``load_model``)."""
    return load_model(directory, None, **kwargs)


# ---- training checkpoints -------------------------------------------------------------------------------------------
class CheckpointError(ValueError):
    """A checkpoint that is missing a file, truncated, damaged or does not fit the run."""


def name(step: int) -> str:
    return f"ckpt-{step:07d}"


def step_of(path: Path) -> int:
    m = _NAME.match(path.name)
    if not m:
        raise ValueError(f"{path} is not a checkpoint folder (ckpt-XXXXXXX)")
    return int(m.group(1))


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint folders of a run, oldest first (temporary and set-aside folders excluded)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted((p for p in run_dir.iterdir() if p.is_dir() and _NAME.match(p.name)), key=step_of)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def verify(ckpt: Path) -> None:
    """Raise ``CheckpointError`` naming the file and the problem unless every file matches the manifest."""
    manifest = ckpt / MANIFEST
    if not ckpt.is_dir():
        raise CheckpointError(f"no checkpoint folder {ckpt}")
    if not manifest.is_file():
        raise CheckpointError(f"{ckpt} is incomplete: no {MANIFEST} (the save was interrupted or files were removed)")
    try:
        files = json.loads(manifest.read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{manifest} is damaged: {e}") from e
    for fname, info in files.items():
        path = ckpt / fname
        if not path.is_file():
            raise CheckpointError(f"{path} is missing")
        size = path.stat().st_size
        if size != info["size"]:
            raise CheckpointError(f"{path} is truncated or damaged: {size} bytes, expected {info['size']}")
        if sha256_file(path) != info["sha256"]:
            raise CheckpointError(f"{path} is corrupted: its sha256 does not match {manifest}")


def save_training(
    run_dir: Path,
    step: int,
    model: LanguageModel,
    trainer_state: dict[str, Any],
    data_meta: dict[str, Any],
    keep_last: int,
    log: Callable[[str], None] = print,
    data_dir: Path | None = None,
) -> Path:
    """Write ``ckpt-{step}`` atomically, then delete all but the ``keep_last`` newest checkpoints. A tokenizer file
    of the dataset (``meta["tokenizer"]["path"]``) is copied in, so the checkpoint is enough to evaluate and sample."""
    final = run_dir / name(step)
    tmp = run_dir / f".tmp-{name(step)}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model(model, tmp)
    torch.save(trainer_state, tmp / TRAINER)
    data_meta = {k: v for k, v in data_meta.items() if not k.startswith("_")}
    tok = dict(data_meta.get("tokenizer", {}))
    if tok.get("path") and data_dir is not None:
        src = Path(tok["path"]) if Path(tok["path"]).is_absolute() else data_dir / tok["path"]
        if src.is_file():
            shutil.copyfile(src, tmp / TOKENIZER)
            data_meta["tokenizer"] = {**tok, "path": TOKENIZER}
    (tmp / DATA_META).write_text(json.dumps(data_meta, indent=2) + "\n")
    write_hf_tokenizer(tmp, data_meta.get("tokenizer", {}))
    write_model_card(tmp, model, step, data_meta, trainer_state, run_dir)
    files = {}
    for p in sorted(tmp.iterdir()):
        with p.open("rb") as f:
            os.fsync(f.fileno())
        files[p.name] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    (tmp / MANIFEST).write_text(json.dumps({"format": 1, "step": step, "files": files}, indent=2) + "\n")
    _fsync_dir(tmp)
    if final.exists():
        try:
            verify(final)
        except CheckpointError as e:
            aside = set_aside(final)
            log(f"{e}; moved it to {aside.name}")
        else:
            shutil.rmtree(tmp)  # never overwrite a good checkpoint
            log(f"{final} already exists and is complete; kept it")
            return final
    tmp.rename(final)
    _fsync_dir(run_dir)
    for old in list_checkpoints(run_dir)[:-keep_last]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


# ---- Hugging Face files of a folder (no transformers needed to write them) ------------------------------------------
def write_hf_tokenizer(directory: Path, tok: dict[str, Any]) -> bool:
    """Make ``AutoTokenizer.from_pretrained(directory)`` work: ``tokenizer.json`` (our BPE's file, or GPT-2's built from
    its encoder.json and vocab.bpe) and a ``tokenizer_config.json`` naming ``PreTrainedTokenizerFast``. False when
    there is no tokenizer to write (GPT-2's files not found)."""
    from memory_mosaics.data.tokenizer import EOT, find_gpt2_dir

    if tok.get("kind") == "gpt2" and not (directory / TOKENIZER).is_file():
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        gpt2 = find_gpt2_dir()
        if gpt2 is None or not (gpt2 / "encoder.json").is_file() or not (gpt2 / "vocab.bpe").is_file():
            return False
        t = Tokenizer(models.BPE.from_file(str(gpt2 / "encoder.json"), str(gpt2 / "vocab.bpe")))
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        t.decoder = decoders.ByteLevel()
        t.add_special_tokens([EOT])
        t.save(str(directory / TOKENIZER))
    if not (directory / TOKENIZER).is_file():
        return False
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOT,
        "eos_token": EOT,
        "unk_token": EOT,
        "pad_token": EOT,  # only ever left padding under an attention mask; never stored in a memory
        "model_max_length": 1_000_000_000,
        "clean_up_tokenization_spaces": False,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    if tok.get("eot_id") is not None:
        ids = {"bos_token_id": tok["eot_id"], "eos_token_id": tok["eot_id"], "pad_token_id": tok["eot_id"]}
        (directory / "generation_config.json").write_text(json.dumps(ids, indent=2) + "\n")
    return True


def train_command(train: dict[str, Any]) -> str:
    """The ``mosaic train`` command of a resolved training configuration (``TrainConfig.to_dict()``): a flag for each
    field that differs from its default (``--resume`` left out: resuming continues the same training)."""
    from memory_mosaics.train.config import TrainConfig

    argv = ["mosaic", "train"]
    for f in dataclasses.fields(TrainConfig):
        if f.name == "resume" or f.name not in train or train[f.name] == f.default:
            continue
        value, flag = train[f.name], "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            argv += [flag, str(value)]
    return shlex.join(argv)


def write_model_card(
    directory: Path,
    model: LanguageModel,
    step: int | None = None,
    data_meta: dict[str, Any] | None = None,
    trainer_state: dict[str, Any] | None = None,
    run_dir: Path | None = None,
) -> None:
    """``README.md``: architecture, parameters, training data and steps, the last validation loss, the command (what is
    known: a folder saved outside training records only the first two)."""
    c = model.config
    data_meta, trainer_state = data_meta or {}, trainer_state or {}
    val = None
    log = run_dir / "log.jsonl" if run_dir is not None else None
    if log is not None and log.is_file():
        for line in log.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "val_loss" in record:
                val = record
    run_file = run_dir / RUN_FILE if run_dir is not None else None
    run = json.loads(run_file.read_text()) if run_file is not None and run_file.is_file() else {}
    command = run.get("command") or run.get("argv")
    if isinstance(command, list):
        command = shlex.join(command)
    if not command and step is not None and Path(sys.argv[0]).name in ("mosaic", "__main__.py") and "train" in sys.argv:
        command = shlex.join(["mosaic", *sys.argv[1:]])  # this process is the command that trains it
    if not command and isinstance(trainer_state.get("train"), dict):
        command = train_command(trainer_state["train"])  # the same training, from its resolved configuration
    hf_type = HF_MODEL_TYPES.get(model.model_type, (None,))[0]
    heads = f"{c.n_head} heads, " if hasattr(c, "n_head") else ""
    if hf_type is not None:
        load = (
            "Load it with `import memory_mosaics.hf` and `AutoModelForCausalLM.from_pretrained(folder)` / "
            "`AutoTokenizer.from_pretrained(folder)`, or with `memory_mosaics.checkpoints.load_pretrained(folder)`."
        )
    else:  # a baseline of models.recurrent: no transformers class
        load = f"Load it with `memory_mosaics.models.recurrent.{type(model).__name__}.from_pretrained(folder)`."
    train = data_meta.get("splits", {}).get("train", {})
    sources = ", ".join(map(str, train.get("sources", []))) or "unrecorded"
    val_text = f"{val['val_loss']:.4f} at step {val.get('step')}" if val else "not measured yet"
    lines = [
        "---",
        f"library_name: {'transformers' if hf_type else 'memory-mosaics'}",
        f"tags: [memory-mosaics, {model.model_type}]",
        "---",
        f"# {model.model_type}" + (f" ({hf_type})" if hf_type else ""),
        "",
        f"A model of the `memory-mosaics` library. {load}",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | {model.model_type}: {c.n_layer} blocks, d {c.n_embd}, {heads}vocab {c.vocab_size} |",
        f"| parameters | {model.num_params(non_embedding=False):,} ({model.num_params():,} non-embedding) |",
        f"| training data | {sources}, {train.get('tokens', '?')} tokens "
        f"(tokenizer {data_meta.get('tokenizer', {}).get('kind')}; data_meta.json) |",
        f"| training steps | {'not recorded' if step is None else step} ({trainer_state.get('tokens', '?')} tokens) |",
        f"| validation loss | {val_text} |",
        f"| command | {f'`{command}`' if command else 'not recorded; the training config is below'} |",
        "",
        "Architecture config: `config.json` (`config`); training config: `trainer.pt` and the run's `run.json`.",
    ]
    if trainer_state.get("train"):
        lines += ["", "```json", json.dumps(trainer_state["train"], indent=2, default=str), "```"]
    (directory / "README.md").write_text("\n".join(lines) + "\n")


def set_aside(ckpt: Path) -> Path:
    aside = ckpt.with_name(ckpt.name + ".corrupt")
    n = 1
    while aside.exists():
        n += 1
        aside = ckpt.with_name(f"{ckpt.name}.corrupt{n}")
    ckpt.rename(aside)
    return aside


def clean_temporary(run_dir: Path) -> None:
    """Remove half-written checkpoints left by a killed run (they never got their final name)."""
    if run_dir.is_dir():
        for p in run_dir.iterdir():
            if p.is_dir() and p.name.startswith(".tmp-ckpt-"):
                shutil.rmtree(p, ignore_errors=True)


def load_trainer_state(ckpt: Path) -> dict[str, Any]:
    path = ckpt / TRAINER
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path} is missing") from e
    except Exception as e:  # torch raises several types for damaged zips and unpickling errors
        raise CheckpointError(f"cannot read {path}: {e}") from e


def newest_good(run_dir: Path, log: Callable[[str], None] = print) -> Path | None:
    """The newest verified checkpoint of a run. Damaged newer ones are reported and moved aside (so later saves can
    take their names); if checkpoints exist but none is good, raise ``CheckpointError`` naming each problem."""
    found = list_checkpoints(run_dir)
    problems = []
    for ckpt in reversed(found):
        try:
            verify(ckpt)
        except CheckpointError as e:
            problems.append(str(e))
            continue
        for msg, bad in zip(problems, reversed(found[len(found) - len(problems) :]), strict=True):
            aside = set_aside(bad)
            log(f"warning: {msg}; moved it to {aside.name} and resuming from the previous good one, {ckpt.name}")
        return ckpt
    if problems:
        raise CheckpointError(f"no usable checkpoint in {run_dir}: " + "; ".join(problems))
    return None


def resolve(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder (then its newest good checkpoint), for ``mosaic eval`` / ``generate``."""
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        if (path / MANIFEST).is_file():
            verify(path)
        return path
    if path.is_dir() and list_checkpoints(path):
        found = list_checkpoints(path)
        for ckpt in reversed(found):
            try:
                verify(ckpt)
                return ckpt
            except CheckpointError as e:
                print(f"warning: {e}; trying an older checkpoint")
        raise CheckpointError(f"no usable checkpoint in {path}")
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint or run folder {path}")
    raise FileNotFoundError(f"{path} holds neither a model (config.json) nor checkpoints (ckpt-XXXXXXX/)")


# ---- reading a checkpoint back: model, tokenizer, vocabulary ---------------------------------------------------------
def load_checkpoint(path: str | Path, device: str = "auto") -> tuple[Path, LanguageModel, dict[str, Any] | None]:
    """(checkpoint folder, model in eval mode, the dataset meta it was trained on or None). ``path`` may be a run
    folder (its newest good checkpoint is used)."""
    ckpt = resolve(path)
    model = load_model(ckpt, map_location=pick_device(device)).eval()
    meta_path = ckpt / DATA_META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    if meta is not None:
        meta["_directory"] = str(ckpt)  # a copied tokenizer file is relative to the checkpoint
    return ckpt, model, meta


def checkpoint_tokenizer(ckpt: Path, meta: dict[str, Any] | None, override: str | Path | None = None) -> Any:
    """The tokenizer of the prepared dataset ``override``, else the one recorded in (or copied into) the checkpoint."""
    from memory_mosaics.data.tokenizer import load_tokenizer

    if override:
        return load_tokenizer(override)
    if meta is None:
        raise ValueError(f"{ckpt} records no tokenizer ({DATA_META} missing); pass --tokenizer DATASET_DIR")
    return load_tokenizer(meta)


def tokenizer_key(meta: dict[str, Any]) -> dict[str, Any]:
    """What identifies a dataset's tokenizer (kind, vocabulary size, end-of-text id), from its meta."""
    tok = meta.get("tokenizer", {})
    return {k: tok.get(k) for k in _TOKENIZER_FIELDS}


def check_vocab(
    ckpt: Path, model: LanguageModel, ckpt_meta: dict[str, Any] | None, data_meta: dict[str, Any], where: str
) -> None:
    """A token stream written with another tokenizer than the checkpoint's gives one clear error."""
    tok = data_meta.get("tokenizer", {})
    if int(tok.get("vocab_size", 0)) > model.config.vocab_size:
        raise ValueError(
            f"vocabulary mismatch: {where} has {tok['vocab_size']} token ids but {ckpt / CONFIG_FILE} has "
            f"vocab_size {model.config.vocab_size} (a checkpoint from another tokenizer?)"
        )
    if ckpt_meta is not None and tokenizer_key(ckpt_meta) != tokenizer_key(data_meta):
        raise ValueError(
            f"vocabulary mismatch: {ckpt / DATA_META} says the model was trained with tokenizer "
            f"{tokenizer_key(ckpt_meta)}, but {where} uses {tokenizer_key(data_meta)}"
        )


def check_context(ckpt: Path, model: LanguageModel, context: int) -> None:
    """A window longer than a GPT's learned positions is refused with the fix."""
    if model.max_context is not None and context > model.max_context:
        raise ValueError(
            f"{ckpt / CONFIG_FILE}: a context of {context} tokens is longer than this GPT's {model.max_context} "
            "learned positions; use --context <= block_size (or a model with rope/alibi/none positions, or a Memory "
            "Mosaic, which has no positions)"
        )


def run_data_dir(ckpt: Path) -> str:
    """The data directory of the training run a checkpoint belongs to (from the run folder's run.json)."""
    run_file = ckpt.parent / RUN_FILE
    if run_file.is_file():
        return json.loads(run_file.read_text())["data"]["directory"]
    raise ValueError(f"{ckpt} is not inside a run folder with {RUN_FILE}; pass --data or --text")
