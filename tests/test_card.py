"""The model card, computed from a config alone: no weights are built or read."""

from __future__ import annotations

import json

import pytest
from transformers import GPT2Config, LlamaConfig

from lmscope.core.adapters import adapter_for
from lmscope.core.card import model_card
from lmscope.core.loading import inspect_model


def card_of(config, model_id="m", name="M"):
    return model_card(config, adapter_for(config), model_id, name)


def test_gpt2_small_card_reads_its_published_shape():
    card = card_of(GPT2Config())
    assert card.parameters == 124_439_808
    assert (card.layers, card.heads_per_layer, card.total_heads) == (12, 12, 144)
    assert (card.hidden_size, card.head_size, card.mlp_size) == (768, 64, 3072)
    assert card.vocab_size == 50_257
    assert card.context_length == 1024
    assert card.positional_encoding == "learned absolute"
    assert card.normalization == "LayerNorm"
    assert card.activation.startswith("GELU")
    assert card.key_value_heads == 12


def test_gpt2_medium_card_reads_its_published_shape():
    card = card_of(GPT2Config(n_layer=24, n_embd=1024, n_head=16))
    assert card.parameters == 354_823_168
    assert (card.layers, card.heads_per_layer, card.total_heads) == (24, 16, 384)
    assert (card.hidden_size, card.mlp_size) == (1024, 4096)


def test_a_llama_style_card_shows_rotary_rmsnorm_silu_and_key_value_heads():
    config = LlamaConfig(
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        hidden_size=64,
        intermediate_size=176,
        vocab_size=1000,
        max_position_embeddings=256,
    )
    card = card_of(config)
    assert card.positional_encoding.startswith("rotary")
    assert card.normalization == "RMSNorm"
    assert card.activation == "SiLU"
    assert (card.heads_per_layer, card.key_value_heads, card.head_size) == (8, 2, 8)
    assert card.mlp_size == 176
    assert card.context_length == 256
    # Independent count: embeddings, per layer q/k/v/o + gated MLP + 2 norms, final norm, lm_head.
    d, kv = 64, 2 * 8
    per_layer = d * d + 2 * d * kv + d * d + 3 * d * 176 + 2 * d
    assert card.parameters == 1000 * d + 2 * per_layer + d + 1000 * d


@pytest.mark.parametrize(
    ("shape", "parameters"),
    [({}, 124_439_808), ({"n_layer": 24, "n_embd": 1024, "n_head": 16}, 354_823_168)],
)
def test_a_card_needs_only_the_config_file(tmp_path, shape, parameters):
    """A folder holding config.json and no weights is enough to read the card."""
    GPT2Config(**shape).save_pretrained(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
    _, _, card = inspect_model(str(tmp_path), allow_local_path=True)
    assert card.parameters == parameters
    json.dumps(card.to_dict())  # the card travels as JSON


def test_a_gemma_3_270m_card_reads_head_dim_windows_and_its_design():
    """Gemma 3 270M's published shape (the offline GGUF's config): head size 256 from
    `head_dim`, not 640 / 4 = 160; sliding windows of 512 on every layer but 5, 11 and 17."""
    from transformers import Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=262_144,
        hidden_size=640,
        intermediate_size=2048,
        num_hidden_layers=18,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        sliding_window=512,
        max_position_embeddings=32_768,
    )
    card = card_of(config)
    assert card.family == "Gemma 3"
    assert (card.head_size, card.key_value_heads) == (256, 1)
    assert card.parameters == 268_098_176
    assert card.activation == "GELU (tanh approx.)"
    assert (card.sliding_window, card.local_layers) == (
        512, tuple(i for i in range(18) if i not in (5, 11, 17))
    )  # fmt: skip
    assert card.rotary and card.gated_mlp and card.tied_embeddings
    assert card.post_norms and card.qk_norm
    assert (card.attention_softcap, card.final_softcap) == (None, None)


def test_gemma_2_states_its_soft_caps_and_alternating_windows():
    from transformers import Gemma2Config

    config = Gemma2Config(num_hidden_layers=4, hidden_size=64, intermediate_size=128,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                          vocab_size=1000, sliding_window=4096)  # fmt: skip
    card = card_of(config)
    assert (card.attention_softcap, card.final_softcap) == (50.0, 30.0)
    assert (card.sliding_window, card.local_layers) == (4096, (0, 2))
    assert card.head_size == 32 and not card.qk_norm and card.post_norms


def test_families_without_windows_or_caps_say_none():
    card = card_of(GPT2Config())
    assert (card.sliding_window, card.local_layers) == (None, ())
    assert (card.attention_softcap, card.final_softcap) == (None, None)
    assert not (card.rotary or card.gated_mlp or card.post_norms or card.qk_norm)
    assert card.tied_embeddings
