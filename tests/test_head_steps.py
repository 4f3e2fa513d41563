"""The step view's numbers: softmax(q . k * scaling, causal mask) is the head's pattern row, and the
weighted sum of the values is the head's output; checked against transformers' own eager pass."""

from __future__ import annotations

import pytest
import torch

from lmscope.core import attention
from lmscope.core.analysis import analyze
from lmscope.core.errors import RequestError
from lmscope.core.head_steps import head_steps, job_position
from lmscope.core.heads import TARGETED, job_row, target_mass

PROMPT = "When Mary and John went to the store, John gave a drink to"


def eager_rows(model, ids: list[int]) -> tuple:
    """transformers' own eager attention patterns `(layers)(1, H, T, T)`."""
    with torch.no_grad(), attention.eager(model):
        return model(torch.tensor([ids]), output_attentions=True).attentions


def check(analysis, eager, layer: int, head: int, position: int) -> None:
    steps = head_steps(analysis, layer, head, position)
    row = analysis.pattern(layer, head)[position]
    torch.testing.assert_close(steps.weights, row, atol=1e-5, rtol=0)
    torch.testing.assert_close(steps.weights, eager[layer][0, head, position], atol=1e-5, rtol=0)
    # the weighted sum of the values is what the head wrote (z, before the output projection)
    torch.testing.assert_close(
        steps.output, analysis.z[layer, position, head], atol=1e-4, rtol=1e-4
    )
    # each step follows from the one before
    shown = steps.allowed.nonzero().flatten()
    assert shown.tolist() == list(range(position + 1))
    torch.testing.assert_close(steps.dots[shown], steps.keys[shown] @ steps.query)
    assert torch.isneginf(steps.scores[position + 1 :]).all()
    assert float(steps.weights[position + 1 :].sum()) == 0
    top = steps.top(3)
    assert steps.weights[top[0]] == steps.weights.max()


@pytest.mark.parametrize("position", [0, 5, -1])
def test_step_view_row_is_the_gpt2_pattern_row(tiny_gpt2, position):
    analysis = analyze(tiny_gpt2, PROMPT)
    eager = eager_rows(tiny_gpt2.model, [t.id for t in analysis.tokens])
    check(analysis, eager, 1, 3, position % len(analysis.tokens))
    steps = head_steps(analysis, 1, 3, position)
    assert steps.kv_heads == steps.heads and steps.group_heads == [3]
    assert steps.standard_scaling


def test_step_view_names_the_shared_key_value_group_under_gqa(tiny_llama):
    analysis = analyze(tiny_llama, PROMPT)
    eager = eager_rows(tiny_llama.model, [t.id for t in analysis.tokens])
    for layer in range(2):
        for head in range(4):
            check(analysis, eager, layer, head, len(analysis.tokens) - 2)
    steps = head_steps(analysis, 1, 3)
    assert (steps.kv_heads, steps.kv_head, steps.group_heads) == (2, 1, [2, 3])
    # heads of one group read the same keys after rotary, but not the same queries
    other = head_steps(analysis, 1, 2)
    torch.testing.assert_close(steps.keys, other.keys)
    assert not torch.allclose(steps.query, other.query)


def test_step_view_row_is_smollm2s_own_eager_row(smollm2, smollm2_hf):
    model, tokenizer = smollm2_hf
    analysis = analyze(smollm2, PROMPT)
    ids = [t.id for t in analysis.tokens]
    assert ids == tokenizer(PROMPT)["input_ids"]
    eager = eager_rows(model, ids)
    last = len(ids) - 1
    for layer, head in [(0, 0), (5, 4), (17, 8), (29, 2)]:
        check(analysis, eager, layer, head, last)
    check(analysis, eager, 12, 7, 4)
    steps = head_steps(analysis, 17, 8)
    assert (steps.kv_heads, steps.kv_head, steps.group_heads) == (3, 2, [6, 7, 8])


def test_step_view_refuses_heads_and_tokens_that_do_not_exist(tiny_gpt2):
    analysis = analyze(tiny_gpt2, "The cat sat")
    with pytest.raises(RequestError, match="No head"):
        head_steps(analysis, 9, 0)
    with pytest.raises(RequestError, match="No token"):
        head_steps(analysis, 0, 0, 3)


def test_steps_without_values_skip_only_the_values(tiny_llama):
    analysis = analyze(tiny_llama, PROMPT)
    fast, full = head_steps(analysis, 1, 1, 4, with_values=False), head_steps(analysis, 1, 1, 4)
    assert fast.values is None and fast.output is None
    torch.testing.assert_close(fast.weights, full.weights, atol=0, rtol=0)


@pytest.mark.parametrize("name", ["gemma2", "gemma3", "olmo2"])
def test_step_view_shows_soft_capping_and_query_key_norms_as_steps(name, gpt2_tokenizer):
    """Gemma 2 soft-caps its scores (2.0 in the tiny model: every score is bent), Gemma 3 and
    OLMo 2 normalize queries and keys before rotary; the row is still the model's own."""
    from families import build

    from lmscope.core.loading import from_model
    from lmscope.dashboard.stages.attention.steps import explain

    lm = from_model(build(name), gpt2_tokenizer, name)
    analysis = analyze(lm, PROMPT)
    eager = eager_rows(lm.model, [t.id for t in analysis.tokens])
    check(analysis, eager, 1, 1, 9)
    steps = head_steps(analysis, 1, 1, 9)
    torch.testing.assert_close(steps.scaled, steps.dots * steps.scaling)
    shown = steps.allowed
    if name == "gemma2":
        assert steps.softcap == 2.0
        capped = 2.0 * torch.tanh(steps.scaled[shown] / 2.0)
        torch.testing.assert_close(steps.scores[shown], capped)
        assert (steps.scores[shown] - steps.scaled[shown]).abs().max() > 1e-3
    else:
        assert steps.softcap is None
        torch.testing.assert_close(steps.scores[shown], steps.scaled[shown])
    assert (steps.qk_norm is not None) == (name != "gemma2")
    text = str(explain(analysis, steps))
    assert ("soft-cap" in text) == (name == "gemma2")
    assert ("first normalizes them" in text) == (name != "gemma2")


def test_job_row_is_where_a_hand_made_head_looks():
    """A previous-token head on rows 2.. and an induction head on the second copy of 'a b c'."""
    ids = torch.tensor([5, 1, 2, 3, 1, 2, 3])
    size = len(ids)
    previous = torch.zeros(size, size)
    previous[0, 0] = previous[1, 0] = 1.0
    for i in range(2, size):
        previous[i, i - 1] = 0.9 - 0.01 * i  # clearest early, nearly as clear later
        previous[i, 0] = 0.1 + 0.01 * i
    mass = target_mass(previous, ids, 0, "previous_token")
    assert mass[:2].tolist() == [0.0, 0.0]  # rows 0 and 1 see too little to show anything
    assert job_row(mass) == size - 1  # the latest row within 90% of the clearest
    induction = torch.zeros(size, size)
    induction[:, 0] = 1.0
    induction[5, 0], induction[5, 3] = 0.3, 0.7  # row 5 (2 again) reads 3, after the first 2
    induction[6, 0], induction[6, 4] = 0.8, 0.2  # row 6 (3 again) reads its target more weakly
    mass = target_mass(induction, ids, 0, "induction")
    torch.testing.assert_close(mass, torch.tensor([0, 0, 0, 0, 0, 0.7, 0.2]))
    assert job_row(mass) == 5
    # read a block of rows at a time, the same masses
    halves = [target_mass(induction[r : r + 4, : r + 4], ids, r, "induction") for r in (0, 4)]
    torch.testing.assert_close(torch.cat(halves), mass)
    assert job_row(torch.zeros(size)) is None


def test_step_view_opens_where_the_demo_models_heads_do_their_job(demo_lm):
    """On the trained demo model's induction prompt: each induction head opens on a row of the
    second copy where it reads the token after the earlier copy, more than on the last row; a
    previous-token head on a row past the first few that reads the token before it."""
    from lmscope.experiments.induction import induction_prompt

    analysis = analyze(demo_lm, induction_prompt(demo_lm))
    ids, size = analysis.ids.tolist(), len(analysis.tokens)
    half = (size + 1) // 2
    report = analysis.heads
    induction = [(l, h) for l, row in enumerate(report.categories) for h, c in enumerate(row)
                 if c == "induction"]  # fmt: skip
    assert induction, "the demo model has induction heads on a repeated sequence"
    for layer, head in induction:
        row = job_position(analysis, layer, head)
        pattern = analysis.pattern(layer, head)
        assert row is not None and row >= half  # in the second copy
        earlier = [j for j in range(1, row - 1) if ids[j] == ids[row]]
        target = float(sum(pattern[row, j + 1] for j in earlier))
        assert target >= 0.5 * float(pattern[row].max())  # the head does its job there
        last = [j for j in range(1, size - 2) if ids[j] == ids[-1]]
        assert target >= float(sum(pattern[-1, j + 1] for j in last))
    rest = [(l, h) for l, row in enumerate(report.categories) for h, c in enumerate(row)
            if c not in TARGETED]  # fmt: skip
    for layer, head in rest:
        assert job_position(analysis, layer, head) is None


def test_previous_token_heads_open_past_the_first_rows(smollm2):
    analysis = analyze(smollm2, PROMPT)
    heads = [(l, h) for l, row in enumerate(analysis.heads.categories) for h, c in enumerate(row)
             if c == "previous_token"]  # fmt: skip
    assert heads
    for layer, head in heads:
        row = job_position(analysis, layer, head)
        pattern = analysis.pattern(layer, head)
        assert row is not None and row >= 2
        best = max(float(pattern[i, i - 1]) for i in range(2, len(analysis.tokens)))
        assert float(pattern[row, row - 1]) >= 0.9 * best


def test_step_view_opens_on_the_job_row_and_names_the_sink(smollm2):
    """With no token chosen, an open previous-token head's step view opens on its job row and
    says why; a row that parks most of its attention on the first token says so in numbers."""
    import json

    from lmscope.dashboard.stages.attention import steps as view

    analysis = analyze(smollm2, PROMPT)
    last = len(analysis.tokens) - 1
    layer, head = 25, 4  # previous-token on this prompt; its last row parks 95% on the sink
    assert analysis.heads.categories[layer][head] == "previous_token"
    row = job_position(analysis, layer, head)
    drawn = view.draw(analysis, {"id": "a"}, {"head": [layer, head]}, None, None)
    assert drawn[1] == row != last  # the query box shows the job row
    text = json.dumps(drawn[0].to_plotly_json()["props"]["data-static"], ensure_ascii=False)
    assert "where this previous-token head does its job" in text
    # a token the user chose is kept, and its row names the sink that takes most of it
    drawn = view.draw(analysis, {"id": "a"}, {"head": [layer, head], "position": last}, None, None)
    assert drawn[1] == last
    text = json.dumps(drawn[0].to_plotly_json()["props"]["data-static"], ensure_ascii=False)
    share = float(head_steps(analysis, layer, head, last).weights[0])
    assert share >= 0.5 and "does its job" not in text
    assert f"{share:.0%} of this row goes to the first token" in text
    assert "the attention sink" in text
