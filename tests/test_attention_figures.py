"""The attention stage's figures without a browser: exact weights, hovers that name tokens, a zoom
window at full resolution on a long prompt, clickable layer view, and the model view's images."""

from __future__ import annotations

import base64
import dataclasses
import struct
import zlib

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from lmscope import from_model
from lmscope.core import attention
from lmscope.core.analysis import OVERVIEW, analyze
from lmscope.dashboard import figures
from lmscope.dashboard.stages.attention.head import window_of
from lmscope.dashboard.stages.attention.plots import (
    attention_heatmap,
    layer_heads,
    thumbnails,
)
from lmscope.dashboard.stages.attention.token_view import overlay_heads

PROMPT = "The cat sat on the mat. The cat sat on the"


def eager(model, ids: list[int]):
    with torch.no_grad(), attention.eager(model):
        return model(torch.tensor([ids]), output_attentions=True).attentions


def test_head_heatmap_holds_the_heads_exact_weights_and_names_tokens(tiny_gpt2, tiny_gpt2_model):
    analysis = analyze(tiny_gpt2, PROMPT)
    heat = attention_heatmap(analysis, 1, 3).data[0]
    out = eager(tiny_gpt2_model, [t.id for t in analysis.tokens])
    assert torch.allclose(torch.as_tensor(heat.z), out[1][0, 3], atol=1e-6)
    # the hover of row 2, column 1 names both tokens, not positions
    assert heat.text[2][1] == "2·␣sat reads 1·␣cat"


def test_a_zoom_on_a_long_prompt_draws_its_window_at_full_resolution(gpt2_tokenizer):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=32, n_positions=1024))
    lm = from_model(model.eval(), gpt2_tokenizer, "tiny-gpt2-1k")
    analysis = analyze(lm, " ".join(f"w{i % 97}" for i in range(350)))
    count = len(analysis.tokens)
    assert count > OVERVIEW
    whole = attention_heatmap(analysis, 0, 1).data[0]
    assert torch.as_tensor(whole.z).shape[0] <= OVERVIEW
    # the overview is the max-pooled pattern to the 3 decimals its hover shows ("≈")
    pooled = analysis.pattern_overview(0, 1)
    assert (torch.as_tensor(whole.z) - pooled).abs().max() <= 0.5 / 4096 + 1e-7
    assert "≈ %{z:.3f}" in whole.hovertemplate
    # plotly reports a box zoom as axis ranges (the y axis reversed)
    window = window_of(
        {"xaxis.range[0]": 99.6, "xaxis.range[1]": 140.4, "yaxis.range[0]": 620.4,
         "yaxis.range[1]": 599.6},
        count,
    )  # fmt: skip
    assert window == (600, 621, 100, 141)
    zoomed = attention_heatmap(analysis, 0, 1, window=window).data[0]
    expected = analysis.pattern(0, 1, slice(600, 621))[:, 100:141]
    assert torch.equal(torch.as_tensor(zoomed.z), expected)
    assert list(zoomed.y) == list(range(600, 621)) and list(zoomed.x) == list(range(100, 141))
    assert zoomed.text[0][0].endswith(f"reads 100·{analysis.tokens[100].display}")
    assert window_of({"xaxis.autorange": True}, count) is False
    assert window_of({"autosize": True}, count) is None
    assert window_of({"xaxis.range[0]": 0, "xaxis.range[1]": 700, "yaxis.range[0]": 700,
                      "yaxis.range[1]": 0}, count) is None  # fmt: skip


def test_layer_view_labels_tokens_and_draws_one_trace_per_head(tiny_gpt2):
    analysis = analyze(tiny_gpt2, PROMPT)
    fig = layer_heads(analysis, 1)
    assert len(fig.data) == analysis.heads_per_layer  # a click's curveNumber is the head
    assert fig.data[2].y[3] == "3·␣on"
    assert fig.layout.yaxis.showticklabels and "0·The" in fig.layout.yaxis.ticktext


def test_model_view_has_one_png_per_head_showing_its_pattern(tiny_gpt2):
    analysis = analyze(tiny_gpt2, PROMPT)
    images = thumbnails(analysis)
    assert len(images) == 2 and all(len(row) == analysis.heads_per_layer for row in images)
    png = base64.b64decode(images[1][3].split(",", 1)[1])
    assert png.startswith(b"\x89PNG")
    width, height = struct.unpack(">II", png[16:24])
    count = len(analysis.tokens)
    assert (width, height) == (count, count)
    # later tokens (the causal mask) are white; the head's largest weight is the darkest blue
    size = struct.unpack(">I", png[33:37])[0]
    raw = zlib.decompress(png[41 : 41 + size])
    pixel = [
        [tuple(raw[r * (3 * width + 1) + 1 + 3 * c : r * (3 * width + 1) + 4 + 3 * c])
         for c in range(width)]
        for r in range(height)
    ]  # fmt: skip
    assert all(pixel[r][c] == (247, 251, 255) for r in range(height) for c in range(r + 1, width))
    pattern = analysis.pattern(1, 3)
    r, c = divmod(int(pattern.argmax()), count)
    assert pixel[r][c] == (8, 48, 107)


def test_overlay_heads_are_the_head_its_group_or_its_layer():
    assert overlay_heads(9, 4, 3, "head") == [4]
    assert overlay_heads(9, 4, 3, "group") == [3, 4, 5]
    assert overlay_heads(12, 4, 12, "group") == [4]
    assert overlay_heads(9, 4, 3, "layer") == list(range(9))


def _strings(value) -> list[str]:
    """Every string in a figure's JSON (labels, hovers, custom data, titles)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    if hasattr(value, "tolist"):
        return _strings(value.tolist())
    return []


def test_no_token_text_reaches_plotly_as_markup(tiny_gpt2):
    """plotly renders <b>, <br> and entities in labels and hovers: a token's text goes in
    escaped, in every figure drawn from the analysis."""
    markup = "<b>bold</b><br>&"
    analysis = analyze(tiny_gpt2, "one two three four")
    analysis.tokens = [dataclasses.replace(t, text=markup, display=markup) for t in analysis.tokens]
    drawn = [
        figures.residual_writes(analysis),
        attention_heatmap(analysis, 0, 1),
        layer_heads(analysis, 1),
    ]
    for fig in drawn:
        leaves = _strings(fig.to_plotly_json())
        assert not [leaf for leaf in leaves if markup in leaf], fig.layout.title.text
        assert any("&lt;b&gt;bold&lt;/b&gt;&lt;br&gt;&amp;" in leaf for leaf in leaves)


def test_a_long_title_is_broken_into_lines_that_fit_not_cut():
    """'Each head's direct effect on logit(' Mary') - logit(' John')' was cut at "logit(' Joh"
    in a half-page figure: it is drawn in lines that each fit the room a title has."""
    title = "Each head's direct effect on logit(' Mary') - logit(' John')"
    fig = figures.head_map(torch.zeros(2, 3), title, "logit", "logit")
    lines = fig.layout.title.text.split("<br>")
    assert len(lines) > 1 and " ".join(lines) == title
    assert all(figures.text_width(line, figures.TITLE_SIZE) <= figures.TITLE_ROOM for line in lines)
    assert fig.layout.margin.t > 40  # the plot moved down to leave the lines room
    short = figures.layer_bars(torch.zeros(3), "Each MLP", "logit")
    assert short.layout.title.text == "Each MLP" and short.layout.margin.t == 40
