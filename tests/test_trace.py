"""The analysis of one prompt: context truncation, refused prompts, one forward pass, the Python API."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import lmscope
from lmscope.core.analysis import analyze
from lmscope.core.errors import PromptError

CONTEXT = 128  # the tiny GPT-2's n_positions


def long_prompt(words: int) -> str:
    return " ".join(f"w{i}" for i in range(words))


def test_a_prompt_longer_than_the_context_keeps_its_last_tokens_with_a_notice(tiny_gpt2):
    prompt = long_prompt(200)
    ids = tiny_gpt2.tokenizer(prompt)["input_ids"]
    assert len(ids) > CONTEXT
    a = analyze(tiny_gpt2, prompt)
    assert [t.id for t in a.tokens] == ids[-CONTEXT:]
    assert [t.index for t in a.tokens] == list(range(CONTEXT))
    assert len(a.notices) == 1
    notice = a.notices[0]
    assert f"{len(ids):,} tokens" in notice and f"{CONTEXT:,}" in notice
    assert f"{len(ids) - CONTEXT:,} tokens were dropped" in notice
    assert a.to_dict()["notices"] == [notice]
    # The kept tokens still point at their own characters of the original prompt.
    assert a.tokens[0].start > 0 and a.tokens[-1].end == len(prompt)
    assert "".join(prompt[t.start : t.end] for t in a.tokens) == prompt[a.tokens[0].start :]
    # And the numbers are those of the model reading exactly the kept tokens.
    with torch.no_grad():
        expected = tiny_gpt2.model(torch.tensor([ids[-CONTEXT:]])).logits[0, -1]
    assert_close(a.logits, expected, atol=1e-4, rtol=1e-4)
    assert a.attention.shape[-1] == CONTEXT


def test_a_prompt_that_fits_has_no_notice(tiny_gpt2):
    prompt = long_prompt(20)
    a = analyze(tiny_gpt2, prompt)
    assert a.notices == []
    assert [t.id for t in a.tokens] == tiny_gpt2.tokenizer(prompt)["input_ids"]


@pytest.mark.parametrize(
    ("prompt", "words"),
    [("", "empty"), ("   ", "whitespace"), ("\n\t \r\n", "whitespace")],
)
def test_empty_and_whitespace_prompts_are_refused_clearly(tiny_gpt2, prompt, words):
    with pytest.raises(PromptError, match=words) as raised:
        analyze(tiny_gpt2, prompt)
    assert "type some text" in str(raised.value)


def test_a_lone_surrogate_is_refused_with_its_position(tiny_gpt2):
    with pytest.raises(PromptError, match="U\\+D800 at character 3"):
        analyze(tiny_gpt2, "abc\ud800")


def test_an_analysis_runs_the_model_exactly_once(tiny_gpt2):
    calls = []
    handle = tiny_gpt2.model.register_forward_hook(lambda *args: calls.append(1))
    try:
        a = analyze(tiny_gpt2, "The cat sat on the mat")
        a.to_dict()
    finally:
        handle.remove()
    assert len(calls) == 1


def test_the_python_api_analyzes_a_folder_in_two_lines(tmp_path, tiny_gpt2_model, gpt2_tokenizer):
    tiny_gpt2_model.save_pretrained(tmp_path)
    gpt2_tokenizer.save_pretrained(tmp_path)

    analysis = lmscope.analyze(str(tmp_path), "The cat sat on the mat")

    assert [t.id for t in analysis.tokens] == [464, 3797, 3332, 319, 262, 2603]
    with torch.no_grad():
        expected = tiny_gpt2_model(torch.tensor([[464, 3797, 3332, 319, 262, 2603]])).logits[0, -1]
    top = expected.softmax(-1).topk(10)
    assert [p.id for p in analysis.top_predictions()] == top.indices.tolist()
    assert analysis.lm.card.layers == 2


def test_the_python_api_accepts_a_loaded_model(tiny_gpt2):
    analysis = lmscope.analyze(tiny_gpt2, "Hello world")
    assert [t.id for t in analysis.tokens] == tiny_gpt2.tokenizer("Hello world")["input_ids"]
    assert analysis.lm is tiny_gpt2
