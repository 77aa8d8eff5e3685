"""Training checkpoints: ``ckpt-XXXXXXX/`` = the model (``config.json`` + ``model.safetensors`` via
``save_pretrained``), ``trainer.pt`` (optimiser, schedule, RNG, data position: plain tensors, dicts and numbers, loaded
with ``torch.load(weights_only=True)``), ``data_meta.json`` (the dataset's tokenizer) and ``manifest.json`` (size and
sha256 of every other file, written last).

A checkpoint is written into a hidden temporary folder and renamed into place, so ``ckpt-XXXXXXX`` either does not exist
or is complete; the manifest then catches later damage (a truncated copy, a bad disk). A good checkpoint is never
overwritten: a damaged one of the same name is moved aside to ``ckpt-XXXXXXX.corrupt``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from memory_mosaics.models.base import LanguageModel

MANIFEST = "manifest.json"
TRAINER = "trainer.pt"
DATA_META = "data_meta.json"
TOKENIZER = "tokenizer.json"
_NAME = re.compile(r"^ckpt-(\d{7,})$")


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


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
        if _sha256(path) != info["sha256"]:
            raise CheckpointError(f"{path} is corrupted: its sha256 does not match {manifest}")


def save(
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
    model.save_pretrained(tmp)
    torch.save(trainer_state, tmp / TRAINER)
    data_meta = {k: v for k, v in data_meta.items() if not k.startswith("_")}
    tok = dict(data_meta.get("tokenizer", {}))
    if tok.get("path") and data_dir is not None:
        src = Path(tok["path"]) if Path(tok["path"]).is_absolute() else data_dir / tok["path"]
        if src.is_file():
            shutil.copyfile(src, tmp / TOKENIZER)
            data_meta["tokenizer"] = {**tok, "path": TOKENIZER}
    (tmp / DATA_META).write_text(json.dumps(data_meta, indent=2) + "\n")
    files = {}
    for p in sorted(tmp.iterdir()):
        with p.open("rb") as f:
            os.fsync(f.fileno())
        files[p.name] = {"size": p.stat().st_size, "sha256": _sha256(p)}
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
    if (path / "config.json").is_file():
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
