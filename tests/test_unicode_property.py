"""Arbitrary Unicode never breaks tokenization or analysis (property-based, with hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmscope.core.analysis import analyze
from lmscope.core.errors import PromptError
from lmscope.core.tokens import tokenize

# Any code point but lone surrogates (which cannot be text; the library refuses them by name):
# emoji, combining marks, right-to-left scripts, control characters and NUL included.
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)
TRICKY = st.sampled_from(
    ["\x00", "\u202e", "שלום", "مرحبا", "e\u0301", "👩‍👩‍👧", "🇫🇷", "\r\n", "\u200b", "\ufeff", "𝔘"]
)
MIXED = st.lists(st.one_of(ANY_TEXT, TRICKY), max_size=8).map("".join)
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(prompt=MIXED)
def test_token_offsets_tile_the_prompt_and_ids_decode_to_it(gpt2_tokenizer, prompt: str) -> None:
    tokens = tokenize(gpt2_tokenizer, prompt)
    ids = [t.id for t in tokens]
    assert gpt2_tokenizer.decode(ids, clean_up_tokenization_spaces=False) == prompt
    position = 0
    for token in tokens:  # no gap, no overlap, in order; a partial-character token covers nothing
        assert token.start == position and token.end >= token.start
        position = token.end
    assert position == len(prompt)
    assert "".join(prompt[t.start : t.end] for t in tokens) == prompt


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(prompt=MIXED)
def test_analysis_of_any_text_succeeds_or_refuses_clearly(tiny_gpt2, prompt: str) -> None:
    try:
        analysis = analyze(tiny_gpt2, prompt)
    except PromptError as error:  # only empty or whitespace-only text is refused
        assert not prompt.strip() and str(error)
        return
    probs = analysis.probabilities
    assert abs(float(probs.sum()) - 1) < 1e-4
    assert len(analysis.tokens) == min(len(tokenize(tiny_gpt2.tokenizer, prompt)), 128)
