"""Gemma 2 and Gemma 3: Llama's module names, with a norm before AND after each sublayer.

Both scale their norms by (1 + w), multiply the token embeddings by sqrt(d_model) inside the
embedding module, use gated GELU MLPs, tie the unembedding to the embeddings, and interleave
sliding-window (local) layers with global ones (`config.layer_types`). Gemma 2 soft-caps the
attention scores and the final logits (`c * tanh(x / c)`); Gemma 3 drops the soft-capping and
normalizes each head's query and key (RMSNorm) before rotary.
"""

from dataclasses import replace

from .llama import LLAMA

GEMMA2 = replace(
    LLAMA,
    family="Gemma 2",
    model_types=("gemma2",),
    attn_out_norm="post_attention_layernorm",
    mlp_out_norm="post_feedforward_layernorm",
    attention_softcap="attn_logit_softcapping",
    final_softcap="final_logit_softcapping",
)

GEMMA3 = replace(
    GEMMA2,
    family="Gemma 3",
    model_types=("gemma3_text",),
    q_norm="self_attn.q_norm",
    k_norm="self_attn.k_norm",
    attention_softcap=None,  # transformers' Gemma 3 attention never applies the config's value
)
