"""``mosaic convert``: import a checkpoint of the authors' nanoMosaics code (facebookresearch/MemoryMosaics) as our
``MemoryMosaic``.

The format is described in ``docs/authors_checkpoints.md``: a nanoGPT-style ``.pt`` file with the state dict
under ``checkpoint["model"]`` (keys ``mosaic.h.{i}....``, maybe prefixed ``_orig_mod.``) and the config under
``checkpoint["model_args"]``. Every tensor is checked (names, shapes, finiteness, the tied head, the two buffers that
encode the masks) and anything that cannot be mapped exactly is refused with one error naming the file and the problem.
The converted model gives the same logits as the authors' forward (fp32, to ~1e-6).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

# the authors' key-scale clamp, ours too (one released version of their code uses 5.0 instead)
from memory_mosaics.layers.features import MAX_LOG_SCALE, PARAM_GAIN
from memory_mosaics.models.base import VOCAB_PADDING

REQUIRED_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "bias", "pmem_size", "pmem_count")
IGNORED_ARGS = ("dropout", "leaky_cuda")  # training-time only / a faster kernel for the same leaky average
PREFIXES = ("_orig_mod.", "module.")  # torch.compile, DDP


class ConversionError(ValueError):
    """The checkpoint cannot be mapped exactly onto our Memory Mosaic; the message names the file and the problem."""


# ---- reading ---------------------------------------------------------------------------------------------------------
def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with errors that say what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise ConversionError(f"{path}: the file is empty")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(
            f"{path}: cannot read the checkpoint (truncated, corrupted, or not a torch.save file): {first}"
        ) from e
    if not isinstance(ckpt, dict):
        raise ConversionError(f"{path}: expected a dict checkpoint, found a {type(ckpt).__name__}")
    if "model" not in ckpt or "model_args" not in ckpt:
        raise ConversionError(
            f"{path}: not a nanoGPT/nanoMosaics training checkpoint (needs 'model' and 'model_args', has "
            f"{', '.join(map(str, ckpt)) or 'nothing'})"
        )
    if not isinstance(ckpt["model"], dict) or not isinstance(ckpt["model_args"], dict):
        raise ConversionError(f"{path}: 'model' and 'model_args' must be dicts")
    return ckpt


def _strip_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in state.items():
        for p in PREFIXES:
            if k.startswith(p):
                k = k[len(p) :]
        out[k] = v
    return out


def _check_args(args: dict[str, Any], where: str) -> dict[str, Any]:
    missing = [k for k in REQUIRED_ARGS if k not in args]
    if missing:
        raise ConversionError(f"{where}: model_args lacks {', '.join(missing)} (has {', '.join(map(str, args))})")
    unknown = sorted(set(args) - set(REQUIRED_ARGS) - set(IGNORED_ARGS))
    if unknown:
        raise ConversionError(
            f"{where}: model_args has fields this importer does not know ({', '.join(unknown)}); "
            "they may change the model's math, so it refuses to guess"
        )
    for k in REQUIRED_ARGS:
        v = args[k]
        if k == "bias":
            if not isinstance(v, bool):
                raise ConversionError(f"{where}: model_args bias must be true or false, got {v!r}")
        elif not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConversionError(f"{where}: model_args {k} must be a positive integer, got {v!r}")
    if args["n_embd"] % args["n_head"]:
        raise ConversionError(f"{where}: n_embd {args['n_embd']} is not divisible by n_head {args['n_head']}")
    return args


def expected_shapes(args: dict[str, Any]) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """(parameters, buffers) of the authors' MemoryMosaic for ``args``, name -> shape."""
    d, H, V, T = args["n_embd"], args["n_head"], args["vocab_size"], args["block_size"]
    m, c, hs = args["pmem_size"], args["pmem_count"], args["n_embd"] // args["n_head"]
    head = (1, H, 1, 1)
    params: dict[str, tuple[int, ...]] = {"mosaic.wte.weight": (V, d), "lm_head.weight": (V, d)}
    buffers: dict[str, tuple[int, ...]] = {}

    def linear(name: str) -> None:
        params[f"{name}.weight"] = (d, d)
        if args["bias"]:
            params[f"{name}.bias"] = (d,)

    def norm(name: str) -> None:
        params[f"{name}.weight"] = (d,)
        if args["bias"]:
            params[f"{name}.bias"] = (d,)

    def keys(name: str) -> None:
        linear(f"{name}.W_k")
        params[f"{name}.leaky_avg.leaky_key_beta"] = head
        params[f"{name}.key_scale"] = head
        buffers[f"{name}.leaky_avg.coef"] = (T, T)

    for i in range(args["n_layer"]):
        b = f"mosaic.h.{i}"
        norm(f"{b}.ln_1")
        keys(f"{b}.attn.k_featurizer")
        linear(f"{b}.attn.v_featurizer.W_v")
        params[f"{b}.attn.v_featurizer.coef"] = head
        params[f"{b}.attn.v_featurizer.val_scale"] = head
        linear(f"{b}.attn.c_proj")
        buffers[f"{b}.attn.bias"] = (1, 1, T, T)
        norm(f"{b}.ln_2")
        keys(f"{b}.mlp.k_featurizer")
        params[f"{b}.mlp.P_k"] = (c, 1, H, m, hs)
        params[f"{b}.mlp.P_v"] = (c, 1, H, m, hs)
        params[f"{b}.mlp.out_scale"] = head
        linear(f"{b}.mlp.c_proj")
    norm("mosaic.ln_f")
    return params, buffers


def _architecture_hint(keys: list[str]) -> str:
    if any(k.startswith("transformer.") for k in keys):
        return "it looks like a nanoGPT GPT checkpoint (keys 'transformer.*'), not a nanoMosaics MemoryMosaic"
    if any(k.startswith(("wte.", "blocks.")) for k in keys):
        return "it looks like a checkpoint of this library; load it with from_pretrained instead"
    return "it is not a nanoMosaics MemoryMosaic (no 'mosaic.wte.weight')"


def _check_buffers(state: dict[str, Tensor], buffers: dict[str, tuple[int, ...]], where: str) -> None:
    """The two buffers are not imported, but a checkpoint whose masks differ from the authors' would compute
    something else: check their content."""
    cache: dict[tuple[str, int], Tensor] = {}
    for name, shape in buffers.items():
        if name not in state:
            continue  # older code may not store them; they are constants
        t = state[name]
        T = shape[-1]
        if name.endswith("coef"):
            key = ("coef", T)
            if key not in cache:
                idx = torch.arange(T)
                cache[key] = (-(idx[:, None] - idx[None, :]).clamp(min=0)).float()
            ok = torch.equal(t.float(), cache[key])
        else:
            key = ("mask", T)
            if key not in cache:
                cache[key] = torch.ones(T, T).tril(diagonal=-1).bool().view(1, 1, T, T)
            ok = torch.equal(t.bool(), cache[key])
        if not ok:
            raise ConversionError(
                f"{where}: buffer {name} differs from the authors' constant (leaky-average exponents / strict causal "
                "mask); this checkpoint computes something else and cannot be mapped exactly"
            )


def _map_key_scale(key_scale: Tensor, scale_pow: int, key_scale_max: float, name: str, where: str) -> Tensor:
    """Theirs: exp(min(10·p·q, K)); ours: exp(min(10·p·q', log 65535)) for the key scale q. With K ≤ log 65535,
    q' = min(q, K/(10p)) is exact; with K > log 65535 a head above our clamp cannot be represented."""
    if key_scale_max == MAX_LOG_SCALE:
        return key_scale
    if key_scale_max < MAX_LOG_SCALE:
        return torch.minimum(key_scale, torch.full_like(key_scale, key_scale_max / (PARAM_GAIN * scale_pow)))
    over = (PARAM_GAIN * scale_pow * key_scale > MAX_LOG_SCALE).nonzero().flatten().tolist()
    if over:
        raise ConversionError(
            f"{where}: {name} heads {over} have a key scale above exp(log 65535), which our model clamps; "
            f"with a clamp at {key_scale_max} in the original code they cannot be mapped exactly"
        )
    return key_scale


def _map_parameters(state: dict[str, Tensor], n_layer: int, key_scale_max: float, source: str) -> dict[str, Tensor]:
    """Our parameters (fp32) from the authors' checked state dict: their block's ``attn`` is our ``contextual`` memory
    and their ``mlp`` our ``persistent`` memory; per-head scalars (1, H, 1, 1) become (H,)."""
    f32 = {k: v.detach().to(torch.float32) for k, v in state.items()}
    head = lambda t: t.reshape(-1)  # noqa: E731  (1, H, 1, 1) -> (H,)
    ours: dict[str, Tensor] = {"wte.weight": f32["mosaic.wte.weight"], "lm_head.weight": f32["mosaic.wte.weight"]}
    for name in ("weight", "bias"):
        if f"mosaic.ln_f.{name}" in f32:
            ours[f"ln_f.{name}"] = f32[f"mosaic.ln_f.{name}"]
    for i in range(n_layer):
        t, o = f"mosaic.h.{i}", f"blocks.{i}"
        for a, b in (
            ("ln_1", "ln_1"),
            ("ln_2", "ln_2"),
            ("attn.k_featurizer.W_k", "contextual.key.W_k"),
            ("attn.v_featurizer.W_v", "contextual.value.W_v"),
            ("attn.c_proj", "contextual.c_proj"),
            ("mlp.k_featurizer.W_k", "persistent.key.W_k"),
            ("mlp.c_proj", "persistent.c_proj"),
        ):
            for name in ("weight", "bias"):
                if f"{t}.{a}.{name}" in f32:
                    ours[f"{o}.{b}.{name}"] = f32[f"{t}.{a}.{name}"]
        for a, b, pow_ in (("attn", "contextual", 1), ("mlp", "persistent", 2)):
            ours[f"{o}.{b}.key.leaky_key_beta"] = head(f32[f"{t}.{a}.k_featurizer.leaky_avg.leaky_key_beta"])
            key_scale = head(f32[f"{t}.{a}.k_featurizer.key_scale"])
            theirs = f"{t}.{a}.k_featurizer"
            ours[f"{o}.{b}.key.key_scale"] = _map_key_scale(key_scale, pow_, key_scale_max, theirs, source)
        ours[f"{o}.contextual.value.coef"] = head(f32[f"{t}.attn.v_featurizer.coef"])
        ours[f"{o}.contextual.value.val_scale"] = head(f32[f"{t}.attn.v_featurizer.val_scale"])
        ours[f"{o}.persistent.P_k"] = f32[f"{t}.mlp.P_k"].squeeze(1)  # (c, 1, H, m, hs) -> (c, H, m, hs)
        ours[f"{o}.persistent.P_v"] = f32[f"{t}.mlp.P_v"].squeeze(1)
        ours[f"{o}.persistent.out_scale"] = head(f32[f"{t}.mlp.out_scale"])
    return ours


def _check_state(state: dict[str, Tensor], args: dict[str, Any], source: str) -> None:
    """Refuse a state dict whose names, shapes, dtypes or values do not fit ``args`` exactly."""
    params, buffers = expected_shapes(args)
    missing = [k for k in params if k not in state]
    unexpected = [k for k in state if k not in params and k not in buffers]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            more = " ..." if len(unexpected) > 6 else ""
            parts.append(f"unexpected {len(unexpected)} key(s): {', '.join(unexpected[:6])}{more}")
        hint = " (does model_args match the weights: n_layer, bias?)"
        raise ConversionError(f"{source}: the state dict does not fit its model_args: {'; '.join(parts)}{hint}")
    wrong = [
        f"{k} is {tuple(state[k].shape)}, expected {shape}"
        for k, shape in {**params, **buffers}.items()
        if k in state and tuple(state[k].shape) != shape
    ]
    if wrong:
        raise ConversionError(
            f"{source}: shapes do not fit model_args (n_embd {args['n_embd']}, n_head {args['n_head']}, "
            f"vocab_size {args['vocab_size']}, block_size {args['block_size']}, pmem_size {args['pmem_size']}, "
            f"pmem_count {args['pmem_count']}): {'; '.join(wrong[:4])}{' ...' if len(wrong) > 4 else ''}"
        )
    for k in params:
        if not state[k].is_floating_point():
            raise ConversionError(f"{source}: {k} has dtype {state[k].dtype}, not a floating-point type")
        if not torch.isfinite(state[k]).all():
            raise ConversionError(f"{source}: {k} contains NaN or infinite values (a diverged or corrupted run)")
    if not torch.equal(state["lm_head.weight"], state["mosaic.wte.weight"]):
        raise ConversionError(f"{source}: lm_head.weight differs from mosaic.wte.weight; our model ties them")
    _check_buffers(state, buffers, source)


def from_nanomosaics(
    state_dict: dict[str, Any],
    model_args: dict[str, Any],
    key_scale_max: float = MAX_LOG_SCALE,
    expected_vocab: int | None = None,
    source: str = "checkpoint",
) -> Any:
    """Our ``MemoryMosaic`` (fp32, eval mode) with the weights of an authors' nanoMosaics state dict.

    ``key_scale_max`` is the clamp of the key-scale exponent in the code that trained the checkpoint (log 65535 in the
    version described by the spec; 5.0 in another released version). ``expected_vocab`` (the tokenizer's) is checked
    against the checkpoint's vocabulary, which may be padded by fewer than VOCAB_PADDING ids.
    """
    from memory_mosaics.models.mosaic import MemoryMosaic, MosaicConfig

    args = _check_args(dict(model_args), source)
    state = _strip_prefixes(state_dict)
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise ConversionError(f"{source}: state dict entries that are not tensors: {', '.join(bad[:5])}")
    if "mosaic.wte.weight" not in state:
        raise ConversionError(f"{source}: {_architecture_hint(list(state))}")
    _check_state(state, args, source)
    V = args["vocab_size"]
    if expected_vocab is not None and not expected_vocab <= V < expected_vocab + VOCAB_PADDING:
        raise ConversionError(
            f"{source}: vocabulary mismatch: the checkpoint has {V} token embeddings but the tokenizer has "
            f"{expected_vocab} tokens; it was trained with another tokenizer"
        )

    ours = _map_parameters(state, args["n_layer"], key_scale_max, source)

    config = MosaicConfig(
        vocab_size=V,
        block_size=args["block_size"],
        n_layer=args["n_layer"],
        n_head=args["n_head"],
        n_embd=args["n_embd"],
        pmem_size=args["pmem_size"],
        pmem_count=args["pmem_count"],
        persistent="memory",
        lookahead=1,
        dropout=float(args.get("dropout", 0.0)),
        bias=args["bias"],
    )
    model = MemoryMosaic(config)
    target = model.state_dict()
    if set(target) != set(ours):  # our own model changed under us: fail loudly rather than load half a model
        raise ConversionError(
            f"internal: key sets differ: ours lacks {sorted(set(target) - set(ours))[:4]}, "
            f"extra {sorted(set(ours) - set(target))[:4]}"
        )
    for k, v in ours.items():
        if tuple(target[k].shape) != tuple(v.shape):
            raise ConversionError(f"internal: {k} is {tuple(target[k].shape)} in our model, {tuple(v.shape)} mapped")
    model.load_state_dict(ours, strict=True)
    return model.eval()


def convert_checkpoint(
    path: str | Path,
    out_dir: str | Path,
    key_scale_max: float = MAX_LOG_SCALE,
    expected_vocab: int | None = None,
) -> Any:
    """Read ``path``, convert, ``save_pretrained(out_dir)`` and record the origin in ``out_dir/converted_from.json``."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    model = from_nanomosaics(ckpt["model"], ckpt["model_args"], key_scale_max, expected_vocab, source=str(path))
    out = Path(out_dir)
    model.save_pretrained(out)
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    origin = {
        "source": str(path.resolve()),
        "sha256": h.hexdigest(),
        "format": "nanoMosaics (facebookresearch/MemoryMosaics) nanoGPT-style checkpoint",
        "model_args": ckpt["model_args"],
        "iter_num": ckpt.get("iter_num"),
        "key_scale_max": key_scale_max,
    }
    tmp = out / ".converted_from.json.tmp"
    tmp.write_text(json.dumps(origin, indent=2, default=str) + "\n")
    tmp.replace(out / "converted_from.json")
    return model
