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
    "gelu_python": "GELU",
    "gelu_accurate": "GELU (tanh approx.)",
    "relu2": "ReLU squared",
}


@dataclass(frozen=True)
class ModelCard:
    """What a learner reads about a model before looking inside it.

    The architecture facts below the display strings are what views branch on (never the family's
    name): `rotary`, `gated_mlp`, `tied_embeddings`, `post_norms` (a norm after each sublayer),
    `qk_norm`, the soft-caps (None: none), `sliding_window` and the `local_layers` it applies to.
    `parity` is set at load (core/parity.py): how closely lmscope's traced pass reproduces the
    model's own logits; `parity_ok` False is a warning every front-end must show. `device`,
    `dtype` and `placement` are set at load too: where the model runs and in what precision.
    """

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
    rotary: bool = False
    gated_mlp: bool = False
    tied_embeddings: bool = False
    post_norms: bool = False
    qk_norm: bool = False
    attention_softcap: float | None = None
    final_softcap: float | None = None
    sliding_window: int | None = None
    local_layers: tuple[int, ...] = ()
    embedding_scale: float = 1.0  # the token embeddings are multiplied by this (Gemma: sqrt(d))
    parity: str = ""  # "lmscope's trace reproduces this model's logits to 3e-06"
    parity_error: float | None = None  # the largest |logit difference| on the load probe
    parity_ok: bool | None = None  # None: not checked (a card read without loading weights)
    # Where it runs, set at load (core/devices.py): the device that takes the input and holds the
    # analyses, the dtype it computes in, one sentence on the placement (the layers each device
    # holds, for a model spread by a device map), and whether weights are offloaded to CPU/disk.
    device: str = "cpu"
    dtype: str = "float32"
    placement: str = ""
    offloaded: bool = False

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


def activation_name(config: PretrainedConfig) -> str:
    """The MLP's activation as its config names it (families use three different keys)."""
    for key in ("activation_function", "hidden_activation", "hidden_act"):
        value = getattr(config, key, None)
        if value:
            return str(value)
    return "?"


def head_size(config: PretrainedConfig) -> int:
    """Each head's width: `config.head_dim` where the config gives it (Gemma: 256 with d_model
    640 and 4 heads), else hidden size / heads."""
    value = getattr(config, "head_dim", None)
    return int(value) if value else config.hidden_size // config.num_attention_heads


def local_layers(config: PretrainedConfig) -> tuple[int | None, tuple[int, ...]]:
    """The sliding window and the layers that attend within it, from the config's conventions:
    `layer_types` (transformers 5: 'sliding_attention' per layer), GPT-Neo's `attention_layers`
    with `window_size`, else a `sliding_window` every layer uses (Mistral, Phi-3)."""
    layers = config.num_hidden_layers
    kinds = getattr(config, "layer_types", None)
    window = getattr(config, "sliding_window", None)
    if kinds:
        local = tuple(i for i, kind in enumerate(kinds[:layers]) if kind == "sliding_attention")
        return (window, local) if window and local else (None, ())
    neo = getattr(config, "attention_layers", None)
    if neo:
        local = tuple(i for i, kind in enumerate(neo[:layers]) if kind == "local")
        return (config.window_size, local) if local else (None, ())
    if window and getattr(config, "use_sliding_window", True) is not False:
        return window, tuple(range(layers))
    return None, ()


def _config_value(config: PretrainedConfig, key: str | None) -> float | None:
    value = getattr(config, key, None) if key else None
    return None if value is None else float(value)


def positional_text(config: PretrainedConfig, adapter: Adapter) -> str:
    """The adapter's name for its positions, with the rotary scaling where the config asks for
    one (Llama 3: 'rotary (RoPE), llama3 scaling')."""
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    kinds = rope.values() if rope and all(isinstance(v, dict) for v in rope.values()) else [rope]
    scaled = sorted({k.get("rope_type") or k.get("type") or "default" for k in kinds} - {"default"})
    if not adapter.rotary or not scaled:
        return adapter.positional_encoding
    return f"{adapter.positional_encoding}, {' / '.join(scaled)} scaling"


def model_card(
    config: PretrainedConfig, adapter: Adapter, model_id: str, name: str, source: str = ""
) -> ModelCard:
    """Derive the card from a config; `parameters` is exact, not estimated; `source` says where
    the weights came from."""
    heads = config.num_attention_heads
    activation = activation_name(config)
    window, local = local_layers(config)
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
        head_size=head_size(config),
        mlp_size=mlp_size(config),
        vocab_size=config.vocab_size,
        positional_encoding=positional_text(config, adapter),
        context_length=config.max_position_embeddings,
        normalization=adapter.normalization,
        activation=_ACTIVATIONS.get(activation, activation),
        source=source,
        rotary=adapter.rotary,
        gated_mlp=adapter.gated_mlp,
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        post_norms=adapter.attn_out_norm is not None or adapter.mlp_out_norm is not None,
        qk_norm=adapter.q_norm is not None,
        attention_softcap=_config_value(config, adapter.attention_softcap),
        final_softcap=_config_value(config, adapter.final_softcap),
        sliding_window=window,
        local_layers=local,
    )
