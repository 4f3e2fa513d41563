"""Model comparison: each side is that model's own prediction and head census, on a shared
normalized depth axis."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from lmscope.core import attention
from lmscope.core.heads import HeadReport
from lmscope.core.loading import from_model
from lmscope.core.profile import head_profile
from lmscope.experiments.comparison import compare, depths

PROMPT = "The cat sat on the mat. The cat sat on the"


def test_depth_runs_from_zero_to_one_whatever_the_number_of_layers():
    assert depths(1) == [0.0]
    assert depths(2) == [0.0, 1.0]
    assert depths(5) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_two_models_are_compared_on_their_own_predictions_and_heads(tiny_gpt2, gpt2_tokenizer):
    torch.manual_seed(5)
    config = GPT2Config(
        n_layer=3, n_head=6, n_embd=96, n_positions=128, attn_implementation="eager"
    )
    deeper = from_model(GPT2LMHeadModel(config), gpt2_tokenizer, "deeper")
    doc = compare(tiny_gpt2, deeper, PROMPT).to_dict()
    ids = torch.tensor([gpt2_tokenizer(PROMPT)["input_ids"]])
    for side, lm in zip(doc["models"], (tiny_gpt2, deeper), strict=True):
        with torch.no_grad(), attention.eager(lm.model):
            out = lm.model(ids, output_attentions=True)
        probs = out.logits[0, -1].softmax(-1)
        top = probs.topk(10)
        assert [p["id"] for p in side["predictions"]] == top.indices.tolist()
        report = HeadReport.from_pattern(torch.stack(out.attentions)[:, 0], ids[0])
        assert side["counts_per_layer"] == report.counts_per_layer()
        assert side["depth"] == depths(lm.layers)
        for category, row in side["fraction_per_layer"].items():
            assert sum(row) >= 0
            for layer, fraction in enumerate(row):
                expected = report.counts_per_layer()[category][layer] / lm.heads
                assert fraction == round(expected, 4)
        assert side["model"]["layers"] == lm.layers
        # First-token heads and the sink, from transformers' own weights on the first key.
        first = torch.stack(out.attentions)[:, 0, :, 2:, 0].mean(-1)  # (layers, heads): rows i >= 2
        assert side["first_token_per_layer"] == (first >= 0.5).sum(-1).tolist()
        assert side["sink_per_layer"] == [round(float(x), 4) for x in first.mean(-1)]
        # The model in general: its head profile on the probe set.
        profile = head_profile(lm)
        assert side["profile"]["counts_per_layer"] == profile.counts_per_layer()
        assert side["profile"]["first_token_per_layer"] == profile.first_token_counts()
    same = doc["models"][0]["predictions"][0]["id"] == doc["models"][1]["predictions"][0]["id"]
    assert doc["same_top_prediction"] == same
