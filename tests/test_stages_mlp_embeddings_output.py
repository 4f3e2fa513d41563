"""What the MLP, embeddings and output stages say about a Llama-style model: the gated MLP as it
is, a readable scale beside massive activations, no empty position plot for rotary positions,
and the tied-embedding logit-lens row explained."""

from __future__ import annotations

import torch

from lmscope.core.analysis import analyze
from lmscope.dashboard.figures import residual_writes, vector_strip, write_scale
from lmscope.dashboard.stages.embeddings import no_position_vector
from lmscope.dashboard.stages.mlp import shape
from lmscope.dashboard.stages.output import lens_note

PROMPT = "When Mary and John went to the store, John gave a drink to"


def test_a_massive_activation_switches_the_colour_to_a_log_scale_and_says_where():
    attention, mlp = torch.ones(3, 5), torch.ones(3, 5)
    mlp[2, 0] = 25_000.0  # SmolLM2 writes about this much at the first position
    log, note = write_scale({"attention": attention, "MLP": mlp})
    assert log and "25,000 by the MLP of L2 at position 0" in note
    assert write_scale({"attention": attention, "MLP": torch.ones(3, 5) * 2}) == (
        False,
        "colour: norm, linear scale",
    )


def test_residual_writes_keep_the_true_norm_in_the_hover_on_a_log_scale(tiny_llama):
    analysis = analyze(tiny_llama, PROMPT)
    planted = analysis.mlp_norms.clone()
    planted[0, 0] *= 1e4  # a massive activation
    analysis.mlp_norms = planted
    fig = residual_writes(analysis)
    mlp = fig.data[1]
    true = float(analysis.mlp_norms[0, 0])
    assert mlp.customdata[0][0][1] == round(true, 2)
    assert abs(mlp.z[0][0] - torch.tensor(true).log10().item()) < 1e-3
    assert "log scale" in fig.layout.title.text


def test_the_gated_mlp_is_drawn_with_gate_and_up(tiny_llama, tiny_gpt2):
    card = tiny_llama.card
    assert tiny_llama.card.gated_mlp and not tiny_gpt2.card.gated_mlp
    gated = str(shape(card, gated=True).to_plotly_json())
    assert "gate, then SiLU" in gated and "'up'" in gated and "down" in gated
    assert "gate" not in str(shape(tiny_gpt2.card).to_plotly_json())


def test_rotary_models_get_a_note_instead_of_a_position_plot(tiny_llama):
    analysis = analyze(tiny_llama, PROMPT)
    assert analysis.position_embeddings is None
    assert "No position vector" in no_position_vector(analysis)


def test_the_embedding_strip_has_a_colour_scale_symmetric_about_zero():
    trace = vector_strip(torch.tensor([-0.5, 0.1, 0.25]), "x").data[0]
    assert trace.showscale is not False and list(trace.colorbar.tickvals) == [-0.5, 0, 0.5]


def test_tied_embeddings_explain_the_logit_lens_bottom_row(tiny_gpt2, tiny_llama):
    gpt2 = analyze(tiny_gpt2, PROMPT)  # GPT-2 ties wte and lm_head
    assert tiny_gpt2.card.tied_embeddings  # the card's fact, and the weights' truth
    assert (
        tiny_gpt2.model.get_output_embeddings().weight
        is tiny_gpt2.model.get_input_embeddings().weight
    )
    assert "predicts the input token again" in lens_note(gpt2).children
    untied = tiny_llama.model.get_output_embeddings().weight
    assert untied is not tiny_llama.model.get_input_embeddings().weight
    assert not tiny_llama.card.tied_embeddings
    assert lens_note(analyze(tiny_llama, PROMPT)) is None
