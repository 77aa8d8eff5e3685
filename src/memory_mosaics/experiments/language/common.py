"""What the language-model figure commands share: checkpoints with labels, evaluation tokens, and the three outputs
(PNG, JSON of the numbers, Markdown section) that every figure writes."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memory_mosaics.experiments.figures import pyplot, save_figure
from memory_mosaics.models import LanguageModel

PAPER = "Zhang et al., Memory Mosaics (ICLR 2025)"


@dataclass
class Checkpoint:
    """A loaded model and where it came from."""

    label: str
    path: Path
    model: LanguageModel
    meta: dict[str, Any] | None  # the dataset meta (tokenizer) recorded with the checkpoint

    @property
    def kind(self) -> str:
        """``mosaic``, ``mosaic2``, ``llama``, ``gpt-learned``, ``gpt-rope``, ``gpt-alibi`` or ``gpt-none``."""
        return self.model.model_type if self.model.model_type != "gpt" else f"gpt-{self.model.config.pos}"

    @property
    def block_size(self) -> int:
        return int(self.model.config.block_size)

    def describe(self) -> dict[str, Any]:
        c = self.model.config
        return {
            "label": self.label,
            "checkpoint": str(self.path),
            "kind": self.kind,
            "n_layer": c.n_layer,
            "n_embd": c.n_embd,
            "n_head": c.n_head,
            "block_size": c.block_size,
            "params": self.model.num_params(),
        }


def default_label(model: LanguageModel) -> str:
    c = model.config
    if model.model_type in ("mosaic", "mosaic2", "llama"):
        name = {"mosaic": "Memory Mosaic", "mosaic2": "Memory Mosaic v2", "llama": "llama"}[model.model_type]
        return f"{name} {c.n_layer}L"
    pos = {"learned": "", "rope": "-RoPE", "alibi": "-ALiBi", "none": "-NoPE"}.get(c.pos, f"-{c.pos}")
    return f"GPT{pos} {c.n_layer}L"


def split_spec(spec: str) -> tuple[str | None, str]:
    """``LABEL=PATH`` or ``PATH``."""
    if "=" in spec and not Path(spec).exists():
        label, path = spec.split("=", 1)
        return label, path
    return None, spec


def load_checkpoints(specs: list[str], device: str = "cpu") -> list[Checkpoint]:
    """Checkpoint folders or run folders (their newest good checkpoint), each optionally ``LABEL=PATH``."""
    from memory_mosaics.checkpoints import load_checkpoint

    out = []
    for spec in specs:
        label, path = split_spec(spec)
        ckpt, model, meta = load_checkpoint(path, device)
        out.append(Checkpoint(label or default_label(model), ckpt, model, meta))
    labels = [c.label for c in out]
    if len(set(labels)) != len(labels):  # two runs of the same shape: fall back to the folder names
        for c in out:
            c.label = f"{c.label} ({c.path.parent.name})"
    return out


def eval_tokens(
    ck: Checkpoint, text: Path | None = None, data: str | None = None, split: str = ""
) -> tuple[np.ndarray, str]:
    """The token stream to evaluate ``ck`` on, read with its own tokenizer, and a name for it: the file ``text``, else
    ``split`` (default: the validation split) of the prepared dataset ``data`` (default: the one the run trained on)."""
    from memory_mosaics.checkpoints import check_vocab, checkpoint_tokenizer, run_data_dir
    from memory_mosaics.data.shards import TokenShard, default_val_split
    from memory_mosaics.data.sources import encode_text

    if text:
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"no text file {path}")
        return encode_text(path, checkpoint_tokenizer(ck.path, ck.meta, None)), str(path)
    data = data or run_data_dir(ck.path)
    split = split or default_val_split(data) or ""
    if not split:
        raise ValueError(f"{data} has no validation split; name one with --split")
    shard = TokenShard.open(data, split)
    check_vocab(ck.path, ck.model, ck.meta, shard.meta, f"{data}/meta.json")
    return np.asarray(shard.tokens), f"{data}:{split}"


@dataclass(frozen=True)
class EvalData:
    """The evaluation windows of the loss and attention figures: which tokens (see ``eval_tokens``), at most how many
    windows (0 = all) and how many per forward."""

    text: Path | None = None
    data: str | None = None
    split: str = ""
    max_windows: int = 64
    batch_size: int = 8

    def tokens(self, ck: Checkpoint) -> tuple[np.ndarray, str]:
        return eval_tokens(ck, self.text, self.data, self.split)


def same_tokenizer_note(cks: list[Checkpoint]) -> str:
    """A warning line when the models were trained with different tokenizers (losses are then not comparable)."""
    from memory_mosaics.checkpoints import tokenizer_key

    keys = {json.dumps(tokenizer_key(c.meta or {}), sort_keys=True) for c in cks}
    return (
        "" if len(keys) <= 1 else "**Warning:** these checkpoints use different tokenizers; losses are not comparable."
    )


def smooth(values: np.ndarray | list[float], width: int) -> np.ndarray:
    """Centred moving average that keeps the length (the window shrinks at the edges)."""
    v = np.asarray(values, dtype=np.float64)
    if width <= 1 or len(v) < 2:
        return v
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(len(v))
    lo, hi = np.maximum(0, i - width // 2), np.minimum(len(v), i + width // 2 + 1)
    return (c[hi] - c[lo]) / (hi - lo)


def rounded(x: Any, digits: int = 6) -> Any:
    """Floats rounded to ``digits`` significant digits (keeps the JSON small); NaN/inf become None."""
    if isinstance(x, float):
        return None if not math.isfinite(x) else float(f"{x:.{digits}g}")
    if isinstance(x, dict):
        return {k: rounded(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v, digits) for v in x]
    if isinstance(x, np.ndarray):
        return rounded(x.tolist(), digits)
    if isinstance(x, np.generic):
        return rounded(x.item(), digits)
    return x


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            v = f"{v:.4f}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def write_outputs(out: str | Path, name: str, numbers: dict[str, Any], section: str, fig: Any | None = None) -> Path:
    """``<out>/<name>.json`` (numbers), ``<name>.md`` (a Markdown section) and ``<name>.png`` (the figure)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(rounded(numbers), indent=1) + "\n")
    if fig is not None:
        save_figure(fig, out / f"{name}.png", bbox_inches="tight")
    (out / f"{name}.md").write_text(section.rstrip() + "\n")
    return out


def panel_grid(n: int, width: float = 4.5, height: float = 3.5, max_cols: int = 3) -> tuple[Any, list[Any]]:
    plt = pyplot()
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


ARCH_COLOURS = {
    "mosaic": "tab:red",
    "mosaic2": "tab:orange",
    "llama": "tab:olive",
    "gpt-learned": "tab:blue",
    "gpt-rope": "tab:green",
    "gpt-alibi": "tab:purple",
}


def colour(kind: str) -> str:
    return ARCH_COLOURS.get(kind, "tab:gray")
