"""One adapter per model family; `adapter_for(config)` picks it."""

from __future__ import annotations

from transformers import PretrainedConfig
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from ..errors import UnsupportedModelError
from .base import Adapter
from .gemma import GEMMA2, GEMMA3
from .gpt2 import GPT2
from .gpt_neo import GPT_NEO
from .gpt_neox import GPT_NEOX
from .llama import LLAMA
from .olmo2 import OLMO2
from .opt import OPT
from .phi3 import PHI3
from .qwen3 import QWEN3

ADAPTERS: tuple[Adapter, ...] = (
    GPT2, GPT_NEO, GPT_NEOX, OPT, LLAMA, QWEN3, PHI3, OLMO2, GEMMA2, GEMMA3
)  # fmt: skip
_BY_MODEL_TYPE = {model_type: a for a in ADAPTERS for model_type in a.model_types}
SUPPORTED_MODEL_TYPES = tuple(sorted(_BY_MODEL_TYPE))


def adapter_for(config: PretrainedConfig, model_id: str = "this model") -> Adapter:
    """The adapter of the config's family, or a clear refusal naming why."""
    model_type = getattr(config, "model_type", "")
    check_model_type(
        model_type,
        model_id,
        list(getattr(config, "architectures", None) or []),
        bool(getattr(config, "is_encoder_decoder", False)),
        bool(getattr(config, "is_decoder", False)),
    )
    return _BY_MODEL_TYPE[model_type]


def check_model_type(
    model_type: str,
    model_id: str = "this model",
    architectures: list[str] | None = None,
    encoder_decoder: bool = False,
    decoder: bool = False,
) -> None:
    """Refuse a family lmscope has no adapter for, from its name alone (a GGUF header gives only
    that, and reading the rest of its metadata can take many seconds)."""
    if model_type in _BY_MODEL_TYPE:
        return
    architectures = architectures or []
    causal = any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in architectures)
    encoder = model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not decoder
    if (
        encoder_decoder
        or encoder
        or (architectures and not causal)
        or (model_type and model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    ):
        kind = ", ".join(architectures) or f"a '{model_type}' model"
        raise UnsupportedModelError(
            f"{model_id} is not a causal (next-token) language model ({kind}); lmscope traces "
            "decoder-only models."
        )
    raise UnsupportedModelError(
        f"{model_id} is a '{model_type}' model, a family lmscope does not trace yet "
        f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})."
    )


__all__ = ["ADAPTERS", "SUPPORTED_MODEL_TYPES", "Adapter", "adapter_for", "check_model_type"]
