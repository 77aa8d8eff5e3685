"""Hugging Face ``transformers`` integration: a config, a ``PreTrainedModel`` and a ``...ForCausalLM`` per architecture
(v1, v2, the GPT and llama baselines), wrapping the library's models, with a ``Cache`` that carries their streaming
state so that ``generate()`` does O(1) work per token. Importing this package registers them with ``AutoConfig`` and
``AutoModelForCausalLM``; a folder written by ``save_pretrained`` or ``mosaic train`` loads with either."""

try:
    import transformers  # noqa: F401
except ImportError as e:
    raise ImportError(
        f"memory_mosaics.hf needs Hugging Face transformers ({e}): pip install 'memory-mosaics[hf]'"
    ) from e

from memory_mosaics.hf.modeling import (
    HF_CLASSES,
    MosaicCache,
    MosaicsForCausalLM,
    MosaicsHFConfig,
    register,
)

register()

__all__ = ["HF_CLASSES", "MosaicCache", "MosaicsForCausalLM", "MosaicsHFConfig", "register"]
