"""One adapter per model family; `adapter_for(config)` picks it."""

from __future__ import annotations

from transformers import PretrainedConfig
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from ..errors import UnsupportedModelError
from .base import Adapter
from .gpt2 import GPT2
from .gpt_neo import GPT_NEO
from .gpt_neox import GPT_NEOX
from .llama import LLAMA
from .opt import OPT

ADAPTERS: tuple[Adapter, ...] = (GPT2, GPT_NEO, GPT_NEOX, OPT, LLAMA)
_BY_MODEL_TYPE = {model_type: a for a in ADAPTERS for model_type in a.model_types}
SUPPORTED_MODEL_TYPES = tuple(sorted(_BY_MODEL_TYPE))


def adapter_for(config: PretrainedConfig, model_id: str = "this model") -> Adapter:
    """The adapter of the config's family, or a clear refusal naming why."""
    model_type = getattr(config, "model_type", "")
    if model_type in _BY_MODEL_TYPE:
        return _BY_MODEL_TYPE[model_type]
    architectures = list(getattr(config, "architectures", None) or [])
    causal = any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in architectures)
    encoder = model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not config.is_decoder
    if (
        config.is_encoder_decoder
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


__all__ = ["ADAPTERS", "SUPPORTED_MODEL_TYPES", "Adapter", "adapter_for"]
