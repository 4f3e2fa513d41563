"""The tour's head step opens a head whose role a learner can see, and says what it does in the
numbers of the loaded model, checked against transformers' own attention weights."""

from __future__ import annotations

import re

import torch

from lmscope.core.analysis import analyze
from lmscope.core.heads import HeadReport
from lmscope.dashboard.tour import IOI, clear_head, head_text


def report(categories, strength, sink) -> HeadReport:
    """A one-layer report with hand-set categories, their scores and sink shares."""
    names = ("previous_token", "self", "diffuse", "duplicate_token", "induction")
    scores = {
        n: [[strength[h] if c == n else 0.0 for h, c in enumerate(categories)]] for n in names
    }
    scores["sink"] = [list(sink)]
    return HeadReport(scores, [list(categories)])


def test_a_diffuse_head_is_never_the_one_shown_even_with_the_highest_score():
    shown = report(["diffuse", "self", "previous_token"], [0.99, 0.9, 0.6], [0.0, 0.0, 0.0])
    assert clear_head(shown) == (0, 2)  # previous-token before self; diffuse never
    assert clear_head(report(["diffuse", "other"], [0.99, 0.0], [0.0, 0.0])) is None


def test_a_head_that_parks_its_attention_on_the_first_token_loses_to_one_that_shows_its_role():
    shown = report(["previous_token", "previous_token"], [0.95, 0.7], [0.8, 0.05])
    assert clear_head(shown) == (0, 1)  # 0.95 x 0.2 of the heatmap vs 0.7 x 0.95


def test_on_smollm2_and_the_ioi_prompt_the_tour_opens_a_previous_token_head_and_says_it_truly(
    smollm2, smollm2_hf
):
    analysis = analyze(smollm2, IOI)
    layer, head = clear_head(analysis.heads)
    assert analysis.heads.categories[layer][head] == "previous_token"
    # transformers' own eager pass: that head's pattern is a stripe below the diagonal.
    model, tokenizer = smollm2_hf
    ids = tokenizer(IOI, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        pattern = model(ids, output_attentions=True).attentions[layer][0, head]
    rows = torch.arange(2, ids.shape[1])
    previous = pattern[rows, rows - 1]
    rest = 1 - pattern[rows, 0]
    assert float(previous.sum() / rest.sum()) > 0.6
    assert all(int(pattern[i, 1:].argmax()) + 1 == i - 1 for i in rows.tolist())
    text = head_text(analysis, layer, head)
    assert f"L{layer}-H{head}, a previous-token head" in text
    share = re.search(r"([\d.]+)% of the attention it does not park", text).group(1)
    assert abs(float(share) / 100 - float(previous.sum() / rest.sum())) < 0.002
    sink = re.search(r"\(([\d.]+)% sits on the first token\)", text).group(1)
    assert abs(float(sink) / 100 - float(pattern[rows, 0].mean())) < 0.002
    last = re.search(r"the last token ␣to gives ([\d.]+)% to ␣drink", text).group(1)
    assert abs(float(last) / 100 - float(pattern[-1, -2])) < 0.002
