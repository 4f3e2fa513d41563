"""OPT: learned positions (offset by 2), the MLP inline in the block (`fc1` -> `fc2`)."""

from .base import Adapter

OPT = Adapter(
    family="OPT",
    model_types=("opt",),
    blocks="model.decoder.layers",
    attention="self_attn",
    out_proj="self_attn.out_proj",
    mlp="fc2",
    unembed=("model.decoder.final_layer_norm", "model.decoder.project_out", "lm_head"),
    token_embedding="model.decoder.embed_tokens",
    position_embedding="model.decoder.embed_positions",
    positional_encoding="learned absolute",
    normalization="LayerNorm",
)
