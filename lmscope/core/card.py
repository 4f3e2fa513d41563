"""The model card: a model's shape and design, read off its config without loading any weight."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig

from .adapters import Adapter

_ACTIVATIONS = {
    "gelu_new": "GELU (tanh approx.)",
    "gelu_pytorch_tanh": "GELU (tanh approx.)",
    "gelu_fast": "GELU (tanh approx.)",
    "gelu": "GELU",
    "relu": "ReLU",
    "silu": "SiLU",
    "swish": "SiLU",
}


@dataclass(frozen=True)
class ModelCard:
    """What a learner reads about a model before looking inside it."""

    model_id: str
    name: str
    family: str
    parameters: int
    layers: int
    heads_per_layer: int
    total_heads: int
    key_value_heads: int
    hidden_size: int
    head_size: int
    mlp_size: int
    vocab_size: int
    positional_encoding: str
    context_length: int
    normalization: str
    activation: str
    source: str = ""  # where the weights came from, e.g. "GGUF Q4_1, dequantized to float32"

    def to_dict(self) -> dict:
        return asdict(self)


def count_parameters(config: PretrainedConfig) -> int:
    """Exact parameter count (tied weights once), by building the model on the meta device."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def mlp_size(config: PretrainedConfig) -> int:
    """Width of the MLP's hidden layer; families name it differently and GPT-2 leaves it implicit."""
    for name in ("n_inner", "intermediate_size", "ffn_dim"):
        value = getattr(config, name, None)
        if value:
            return int(value)
    return 4 * config.hidden_size


def model_card(
    config: PretrainedConfig, adapter: Adapter, model_id: str, name: str, source: str = ""
) -> ModelCard:
    """Derive the card from a config; `parameters` is exact, not estimated; `source` says where
    the weights came from."""
    heads = config.num_attention_heads
    activation = getattr(config, "activation_function", None) or getattr(config, "hidden_act", "?")
    return ModelCard(
        model_id=model_id,
        name=name,
        family=adapter.family,
        parameters=count_parameters(config),
        layers=config.num_hidden_layers,
        heads_per_layer=heads,
        total_heads=heads * config.num_hidden_layers,
        key_value_heads=getattr(config, "num_key_value_heads", None) or heads,
        hidden_size=config.hidden_size,
        head_size=config.hidden_size // heads,
        mlp_size=mlp_size(config),
        vocab_size=config.vocab_size,
        positional_encoding=adapter.positional_encoding,
        context_length=config.max_position_embeddings,
        normalization=adapter.normalization,
        activation=_ACTIVATIONS.get(activation, activation),
        source=source,
    )
