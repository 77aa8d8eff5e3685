"""Training and evaluation of a Memory Mosaic, a GPT or a compressed-state baseline on RegBench (§5).

A compact loop specific to this benchmark: a fixed training set of N sequences (one per automaton) revisited every
epoch in a fresh order, batches of 32 (the last partial batch kept), AdamW, a linear warm-up over the first 10% of the
steps then a cosine decay to 0.1·lr counted over the whole run (timm's scheduler, as in the benchmark), next-token
cross-entropy on every label except those equal to '|', and model selection by validation loss: the weights with the
lowest val loss seen at any evaluation are the ones scored on the test set. The weights with the highest validation
accuracy are kept and scored too (``selection["accuracy"]``): the paper picks its settings, epochs included, "on the
validation set" without naming the metric, and the two rules part ways once the model grows over-confident.

The recurrent baselines of Figure 9 (``lstm``; ``mamba`` and ``rwkv`` of ``transformers``, ``models.recurrent``)
take the run's depth and width, with their width knob solved so that their body equals that of the Memory Mosaic of
the same shape (``models.sizes.match_body``). Of the shared options, ``n_head``, learned positions and ``bias`` do not
apply to them (no heads, order from the recurrence, the libraries' cells keep their gate biases), nor ``dropout`` to
Mamba and RWKV (transformers' have none); ``scale_logits`` and ``init`` apply to the tied embedding they share with
the other models (``models.recurrent`` says more). ``n_head`` still shapes the Mosaic their size is matched to.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from memory_mosaics.devices import autocast, autocast_dtype, pick_device
from memory_mosaics.experiments.regbench.automata import IGNORE, VOCAB_SIZE, Split, make_split, pad_batch
from memory_mosaics.experiments.regbench.metrics import PooledMetrics
from memory_mosaics.models import LanguageModel, build_model, model_config
from memory_mosaics.models.base import check_range
from memory_mosaics.models.recurrent import (
    HF_KINDS,
    RECURRENT,
    build_recurrent,
    recurrent_config,
    require_transformers,
)
from memory_mosaics.models.sizes import body_params, match_body
from memory_mosaics.train.schedule import WarmupCosine

MODELS = ("mosaic", "gpt", *RECURRENT)  # the command's choices
BLOCK_SIZE = 1024  # longest model input is 948 tokens (§2); GPT's learned positions cover it
# validation metric -> whether a higher value is better; "loss" is the benchmark code's checkpoint rule
SELECTION_RULES: dict[str, bool] = {"loss": False, "accuracy": True}


def better(rule: str, new: float, old: float) -> bool:
    """Whether validation value ``new`` beats ``old`` under a selection rule (a key of SELECTION_RULES)."""
    return new > old if SELECTION_RULES[rule] else new < old


@dataclass
class RegBenchConfig:
    """Everything one training run depends on; saved with its results."""

    model: str = "mosaic"  # a key of MODELS: mosaic | gpt | lstm | mamba | rwkv
    n_train: int = 100  # N, number of training automata (= training sequences)
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0
    bias: bool = True  # linear layers and LayerNorms (the authors' glue has none)
    scale_logits: bool = False  # logits × 1/sqrt(n_embd), as the authors' glue does
    init: str = "gpt2"  # "gpt2" or "library" (the authors' Library initialisation)
    lr: float = 1e-3
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.999  # benchmark code (its paper's table says 0.99)
    epochs: int = 200
    batch_size: int = 32
    warmup_frac: float = 0.1  # warm-up steps = 10% of all steps (20 of 200 epochs in the benchmark)
    warmup_start_lr: float = 1e-6
    min_lr_frac: float = 0.1  # cosine floor = 0.1·lr
    grad_clip: float = 1.0  # the Memory Mosaics glue clips at 1.0 (the benchmark itself does not clip); 0 = off
    eval_every: int = 1  # epochs between validation passes (1 = every epoch, as in the benchmark)
    n_val: int = 500
    n_test: int = 500
    seed: int = 0  # initialisation and batch order
    data_seed: int = 0  # automata and sequences

    def __post_init__(self) -> None:
        """Refuse a run that cannot train, before any work: the model's own checks (heads dividing the width,
        dropout; for a recurrent baseline, those of the Mosaic it is matched to, its own, and an installed
        ``transformers``), then the schedule and the optimiser."""
        if self.model in RECURRENT:
            model_config("mosaic", **self.model_fields())
            recurrent_config(self.model, **self.model_fields())
            if self.model in HF_KINDS:
                require_transformers()
        else:
            model_config(self.model, **self.model_fields())
        check_range(self, ">= 1", ("n_train", "epochs", "batch_size", "eval_every", "n_val", "n_test"))
        check_range(self, ">= 0", ("weight_decay", "grad_clip", "warmup_start_lr"))
        check_range(self, "> 0", ("lr",))
        check_range(self, "in [0, 1)", ("beta1", "beta2"))
        check_range(self, "in [0, 1]", ("warmup_frac", "min_lr_frac"))

    def model_fields(self) -> dict[str, Any]:
        """Equal architecture hyper-parameters for every model (each takes the fields it has: a GPT's learned
        positions are dropped for the Memory Mosaic, which has none); a Memory Mosaic block has the 12·d² weights of a
        GPT-2 block (persistent memory of 3.5·d slots)."""
        return dict(
            vocab_size=VOCAB_SIZE,
            block_size=BLOCK_SIZE,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.n_embd,
            dropout=self.dropout,
            bias=self.bias,
            logit_scale=self.n_embd**-0.5 if self.scale_logits else 1.0,
            init=self.init,
            pos="learned",
        )

    def schedule(self, total: int) -> WarmupCosine:
        """timm cosine with warm-up inside the run: linear from warmup_start_lr to lr over the first warmup_frac of
        the ``total`` steps, then min_lr + ½(lr − min_lr)(1 + cos(π·step/total)) with ``step`` counted from the start
        of training."""
        return WarmupCosine(
            self.lr,
            self.min_lr_frac * self.lr,
            math.ceil(self.warmup_frac * total),
            total,
            warmup_start_lr=self.warmup_start_lr,
            cosine_from_zero=True,
        )


def build(cfg: RegBenchConfig) -> LanguageModel:
    """The run's model, freshly initialised from torch's random state. A recurrent baseline's width is solved first,
    on trial models that leave that state as it was, so its initialisation depends on the seed only."""
    fields = cfg.model_fields()
    if cfg.model not in RECURRENT:
        return build_model(cfg.model, **fields)
    with torch.random.fork_rng(devices=[]):
        fields = match_body(cfg.model, fields, body_params(build_model("mosaic", **fields)))
    return build_recurrent(cfg.model, **fields)


@torch.no_grad()
def evaluate(model: LanguageModel, split: Split, exact: list[np.ndarray], batch_size: int = 32) -> dict[str, float]:
    """Pooled loss (on the training labels), accuracy and TVD (on every input position) over a split."""
    device = next(model.parameters()).device
    model.eval()
    order = np.argsort([len(s) for s in split.sequences])  # similar lengths together: less padding
    metrics = PooledMetrics()
    loss_sum, loss_count = 0.0, 0
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        X, Y = (torch.from_numpy(a).to(device) for a in pad_batch([split.sequences[j] for j in idx]))
        with autocast(device, autocast_dtype("auto", device)):
            logits = model(X)[0]
        logits = logits.float()
        loss_sum += F.cross_entropy(logits.flatten(0, 1), Y.flatten(), ignore_index=IGNORE, reduction="sum").item()
        loss_count += int((Y != IGNORE).sum())
        probs = torch.softmax(logits, dim=-1).double().cpu().numpy()
        for b, j in enumerate(idx):
            q = exact[j]
            metrics.add(probs[b, : len(q)], q)
    model.train()
    return {"loss": loss_sum / max(loss_count, 1), **metrics.result()}


def train_run(
    cfg: RegBenchConfig,
    out_dir: Path | None = None,
    splits: dict[str, Split] | None = None,
    progress: bool = True,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Train one model, select the weights by validation loss (and, separately, by validation accuracy), score them on
    the test set. With ``out_dir``, writes config.json, history.jsonl, metrics.json and the selected checkpoints
    (safetensors: ``checkpoint`` by loss, ``checkpoint_best_accuracy`` where that is another epoch) there.
    ``device`` defaults to the best one here (``devices.pick_device("auto")``)."""
    device = pick_device(device or "auto")
    torch.manual_seed(cfg.seed)
    train, val, test = _splits(cfg, splits or {})
    val_exact = val.distributions()
    model = build(cfg).to(device)
    log = _RunLog(cfg, out_dir)
    t0 = time.perf_counter()
    best = _train_and_select(model, cfg, train, val, val_exact, log, progress)
    selection = _score_selected(model, best, test, cfg.batch_size, out_dir)
    result = {
        "model": cfg.model,
        "n_train": cfg.n_train,
        "params": model.num_params(non_embedding=False),
        "params_non_embedding": model.num_params(non_embedding=True),
        "params_body": body_params(model),
        "model_config": asdict(model.config),
        **selection["loss"],  # best_epoch, val, test: the benchmark's rule
        "selection": selection,
        "train_seconds": time.perf_counter() - t0,
        "steps": math.ceil(cfg.n_train / cfg.batch_size) * cfg.epochs,
        "device": str(device),
        "config": asdict(cfg),
    }
    log.write("metrics.json", result)
    return result


def _splits(cfg: RegBenchConfig, given: dict[str, Split]) -> tuple[Split, Split, Split]:
    """The train, val and test splits: those ``given``, the others made from the config."""
    train = given.get("train") or make_split("train", cfg.n_train, cfg.data_seed)
    val = given.get("val") or make_split("val", cfg.n_val, cfg.data_seed)
    test = given.get("test") or make_split("test", cfg.n_test, cfg.data_seed)
    if len(train) != cfg.n_train:
        raise ValueError(f"training split has {len(train)} sequences, config says n_train={cfg.n_train}")
    return train, val, test


class _RunLog:
    """A run's files in ``out_dir`` (nothing without one): config.json at once, then one history line per
    validation pass, then metrics.json."""

    def __init__(self, cfg: RegBenchConfig, out_dir: Path | None) -> None:
        self.out_dir = out_dir
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
            (out_dir / "history.jsonl").write_text("")

    def history(self, row: dict[str, float]) -> None:
        if self.out_dir is not None:
            with (self.out_dir / "history.jsonl").open("a") as f:
                f.write(json.dumps(row) + "\n")

    def write(self, name: str, record: dict[str, Any]) -> None:
        if self.out_dir is not None:
            (self.out_dir / name).write_text(json.dumps(record, indent=2) + "\n")


def _train_and_select(
    model: LanguageModel,
    cfg: RegBenchConfig,
    train: Split,
    val: Split,
    val_exact: list[np.ndarray],
    log: _RunLog,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """Every epoch on the training split in a fresh order; after every ``eval_every`` epochs (and the last), a
    validation pass. Returns, for every selection rule, the best epoch, its validation metrics and its weights (CPU)."""
    device = next(model.parameters()).device
    dtype = autocast_dtype("auto", device)
    opt = model.configure_optimizers(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2))
    steps_per_epoch = math.ceil(cfg.n_train / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    schedule = cfg.schedule(total)
    gen = torch.Generator().manual_seed(cfg.seed)
    best: dict[str, dict[str, Any]] = {}  # rule -> {"epoch", "val", "state"}
    t0 = time.perf_counter()
    step = 0
    bar = tqdm(total=total, disable=not progress, desc=f"{cfg.model} N={cfg.n_train}", leave=False)
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        perm = torch.randperm(cfg.n_train, generator=gen).tolist()
        train_loss = 0.0
        for i in range(0, cfg.n_train, cfg.batch_size):
            batch = pad_batch([train.sequences[j] for j in perm[i : i + cfg.batch_size]])
            X, Y = (torch.from_numpy(a).to(device) for a in batch)
            for group in opt.param_groups:
                group["lr"] = schedule(step)
            with autocast(device, dtype):
                _, loss = model(X, Y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            train_loss += loss.item()
            bar.update(1)
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            v = evaluate(model, val, val_exact, cfg.batch_size)
            row = {"epoch": epoch, "step": step, "train_loss": train_loss / steps_per_epoch}
            log.history({**row, **{f"val_{k}": x for k, x in v.items()}, "seconds": time.perf_counter() - t0})
            _keep_best(best, epoch, v, model)
            bar.set_postfix(val_loss=f"{v['loss']:.3f}", val_acc=f"{v['accuracy']:.3f}", val_tvd=f"{v['tvd']:.3f}")
    bar.close()
    if not best:
        raise RuntimeError(f"{cfg.model} N={cfg.n_train}: validation loss was never finite (diverged?); see history")
    return best


def _keep_best(best: dict[str, dict[str, Any]], epoch: int, v: dict[str, float], model: LanguageModel) -> None:
    """Record this epoch under every rule it wins (one CPU copy of the weights shared by the rules); an epoch whose
    validation loss is not finite wins nothing."""
    state = None
    for rule in SELECTION_RULES if math.isfinite(v["loss"]) else ():
        if rule not in best or better(rule, v[rule], best[rule]["val"][rule]):
            state = state or {k: t.detach().to("cpu", copy=True) for k, t in model.state_dict().items()}
            best[rule] = {"epoch": epoch, "state": state, "val": v}


def _score_selected(
    model: LanguageModel, best: dict[str, dict[str, Any]], test: Split, batch_size: int, out_dir: Path | None
) -> dict[str, dict[str, Any]]:
    """Test metrics of every rule's checkpoint (each epoch scored and saved once, under the first rule that chose
    it)."""
    test_exact = test.distributions()
    selection: dict[str, dict[str, Any]] = {}
    for rule, b in best.items():
        same = next((r for r in selection if best[r]["epoch"] == b["epoch"]), None)
        if same is None:
            model.load_state_dict(b["state"])
            test_metrics = evaluate(model, test, test_exact, batch_size)
            if out_dir is not None:
                model.save_pretrained(out_dir / ("checkpoint" if rule == "loss" else f"checkpoint_best_{rule}"))
        else:
            test_metrics = selection[same]["test"]
        selection[rule] = {"best_epoch": b["epoch"], "val": b["val"], "test": test_metrics}
    return selection
