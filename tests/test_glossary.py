"""The glossary is written for the loaded model: its entries come from the model card."""

from __future__ import annotations

import re

import pytest
from transformers import GPT2Config, LlamaConfig

from lmscope.core.adapters import adapter_for
from lmscope.core.card import model_card
from lmscope.dashboard import glossary, layout, tour
from lmscope.dashboard.glossary import Facts, entries
from lmscope.dashboard.stages import embeddings, investigate, mlp, output, tokens
from lmscope.dashboard.stages.attention import grid
from lmscope.dashboard.terms import linked, plain, slug

STAGE_TEXTS = [m.EXPLAIN for m in (tokens, embeddings, grid, mlp, output, investigate)]


def gpt2_card():
    config = GPT2Config()
    return model_card(config, adapter_for(config), "gpt2", "GPT-2 Small")


def llama_card():
    config = LlamaConfig(
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        hidden_size=576,
        intermediate_size=1536,
        vocab_size=49_152,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
    )
    return model_card(config, adapter_for(config), "smol", "SmolLM2 135M Instruct")


def by_concept(items):
    return {e.concept: e for e in items}


def everything(items) -> str:
    return " ".join(f"{e.term} {e.text}" for e in items)


def test_a_llama_glossary_names_rmsnorm_rope_swiglu_and_grouped_query_attention():
    items = by_concept(entries(llama_card(), Facts(gated_mlp=True, tied_embeddings=True)))
    assert items["normalization"].term == "RMSNorm"
    assert items["positions"].term.startswith("RoPE")
    assert items["activation"].term.startswith("SwiGLU")
    gqa = items["grouped-query-attention"]
    assert "9 query heads" in gqa.text and "3 key/value heads" in gqa.text
    assert "49,152" in items["vocabulary"].text
    assert "8,192" in items["context-length"].text
    assert "embedding table itself" in items["tied-embeddings"].text
    text = everything(items.values())
    assert "50,257" not in text and "1,024" not in text


def test_a_gpt2_glossary_names_layernorm_learned_positions_and_gelu_and_no_gqa():
    items = by_concept(entries(gpt2_card(), Facts(gated_mlp=False, tied_embeddings=True)))
    assert items["normalization"].term == "LayerNorm"
    assert items["positions"].term == "position embedding (learned)"
    assert items["activation"].term.startswith("GELU")
    assert "grouped-query-attention" not in items
    assert "50,257" in items["vocabulary"].text
    assert "1,024" in items["context-length"].text
    assert "124 million" in items["parameters"].text


def test_the_sink_entry_says_what_the_head_scores_found_on_this_prompt():
    found = by_concept(entries(llama_card(), Facts(sink_heads=120, total_heads=270)))
    assert "120 of 270 heads" in found["attention-sink"].text
    none = by_concept(entries(gpt2_card(), Facts(sink_heads=0, total_heads=144)))
    assert "no attention sink" in none["attention-sink"].text
    unknown = by_concept(entries(gpt2_card()))
    assert "On this prompt" not in unknown["attention-sink"].text


def test_untied_embeddings_are_said_to_be_untied():
    items = by_concept(entries(gpt2_card(), Facts(tied_embeddings=False)))
    assert "does not tie" in items["tied-embeddings"].text


@pytest.mark.parametrize("card", [gpt2_card(), llama_card()], ids=["gpt2", "llama"])
def test_every_term_a_stage_text_links_has_an_entry_on_either_architecture(card):
    concepts = {e.concept for e in entries(card, Facts(gated_mlp=True, tied_embeddings=True))}
    linked_terms = [
        slug(m.group(2) or m.group(1))
        for text in STAGE_TEXTS
        for m in re.finditer(r"\[\[([^\[\]|]+)(?:\|([^\[\]|]+))?\]\]", text)
    ]
    assert len(linked_terms) >= 15
    assert set(linked_terms) <= concepts


def test_linked_turns_markers_into_in_page_links_and_leaves_the_rest_as_text():
    parts = linked("an [[attention sink]] and [[heads|attention head]], <b>x</b>")
    links = [p for p in parts if not isinstance(p, str)]
    assert [(a.children, a.href) for a in links] == [
        ("attention sink", "#glossary-attention-sink"),
        ("heads", "#glossary-attention-head"),
    ]
    assert parts[-1] == ", <b>x</b>"  # our own text stays text; nothing is parsed as markup
    assert plain("an [[attention sink]] and [[heads|attention head]]") == (
        "an attention sink and heads"
    )


def test_each_term_has_an_anchor_of_its_own_name_too():
    dl = glossary.entry_list(entries(llama_card(), Facts(gated_mlp=True)))
    ids = {dt.id for dt in dl.children if getattr(dt, "id", None)}
    inner = {
        child.id
        for dt in dl.children
        for child in (dt.children if isinstance(dt.children, list) else [])
        if getattr(child, "id", None)
    }
    assert {"glossary-normalization", "glossary-positions"} <= ids
    assert {"glossary-rmsnorm", "glossary-rope-rotary-position-embedding"} <= inner


def test_the_tour_uses_the_pages_name_mover_starter():
    assert tour.IOI == layout.STARTERS[0].prompt


@pytest.mark.parametrize("card", [gpt2_card(), llama_card()], ids=["gpt2", "llama"])
def test_the_glossary_names_the_model_once_in_its_heading_not_in_every_entry(card):
    items = entries(card, Facts(gated_mlp=True, tied_embeddings=True, sink_heads=3, total_heads=9))
    naming = [e.concept for e in items if card.name in e.term + " " + e.text]
    assert naming == []  # the heading says "Glossary for <model>"; entries say "the model"
    # ... and still give this model's own numbers.
    text = everything(items)
    for number in (card.vocab_size, card.hidden_size, card.mlp_size, card.context_length):
        assert f"{number:,}" in text
    assert f"{card.layers}." in by_concept(items)["layer"].text


def test_a_family_s_design_has_its_entries_and_plain_models_do_not(demo_lm):
    import dataclasses

    gemma = dataclasses.replace(
        demo_lm.card, post_norms=True, qk_norm=True, sliding_window=512,
        local_layers=(0, 1), final_softcap=30.0, embedding_scale=25.3,
    )  # fmt: skip
    terms = {e.term for e in entries(gemma)}
    assert {"norm after each sublayer", "query/key norm", "sliding window (local attention)",
            "soft-capping", "embedding scale"} <= terms  # fmt: skip
    assert "logits at 30" in next(e.text for e in entries(gemma) if e.term == "soft-capping")
    plain = {e.term for e in entries(demo_lm.card)}
    assert not plain & {"norm after each sublayer", "query/key norm", "soft-capping"}
