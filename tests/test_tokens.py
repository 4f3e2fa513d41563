"""Tokenization with the real GPT-2 tokenizer: ids, visible spaces, and offsets that tile the prompt."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmscope.core.tokens import piece_bytes, token_display, tokenize

TRICKY = [
    "The cat sat on the mat",
    " leading space and  double  spaces ",
    "line one\nline two\n\n\tindented\r\n",
    "emoji 🐱🐈‍⬛ and 👩‍👩‍👧 families",
    "中文字符和日本語のテキスト",
    "café naïve résumé — “quotes”",
    "mixed 猫 cat 🐱 кот",
    "<|endoftext|>a special token, then text",
]


def check_tiling(prompt: str, tokens) -> None:
    """Consecutive, non-overlapping spans from 0 to len(prompt) that spell the prompt."""
    assert tokens[0].start == 0
    assert tokens[-1].end == len(prompt)
    for before, after in pairwise(tokens):
        assert before.end == after.start
    for token in tokens:
        assert token.start <= token.end
    assert "".join(prompt[t.start : t.end] for t in tokens) == prompt


def test_the_cat_sat_on_the_mat_has_gpt2s_known_ids(gpt2_tokenizer):
    tokens = tokenize(gpt2_tokenizer, "The cat sat on the mat")
    assert [t.id for t in tokens] == [464, 3797, 3332, 319, 262, 2603]
    assert [t.index for t in tokens] == list(range(6))


def test_display_shows_the_leading_space_gpt2_attaches_to_the_next_token(gpt2_tokenizer):
    tokens = tokenize(gpt2_tokenizer, "The cat sat on the mat")
    assert [t.text for t in tokens] == ["The", " cat", " sat", " on", " the", " mat"]
    assert [t.display for t in tokens] == ["The", "␣cat", "␣sat", "␣on", "␣the", "␣mat"]
    assert tokens[1].piece == "Ġcat"  # the vocabulary entry as GPT-2 stores it


def test_newlines_and_tabs_are_shown_visibly(gpt2_tokenizer):
    tokens = tokenize(gpt2_tokenizer, "a\n\tb")
    shown = "".join(t.display for t in tokens)
    assert "\n" not in shown and "\t" not in shown
    assert "↵" in shown and "⇥" in shown


@pytest.mark.parametrize("prompt", TRICKY)
def test_offsets_tile_the_prompt(gpt2_tokenizer, prompt):
    tokens = tokenize(gpt2_tokenizer, prompt)
    assert [t.id for t in tokens] == gpt2_tokenizer(prompt)["input_ids"]
    check_tiling(prompt, tokens)


@pytest.mark.parametrize("prompt", TRICKY[:7])
def test_each_token_ends_where_its_bytes_complete_a_character(gpt2_tokenizer, prompt):
    """Decoding the first i+1 ids spells the prompt up to token i's end, plus at most one partial
    character (shown by the decoder as U+FFFD)."""
    tokens = tokenize(gpt2_tokenizer, prompt)
    ids = [t.id for t in tokens]
    for i, token in enumerate(tokens):
        prefix = gpt2_tokenizer.decode(ids[: i + 1], clean_up_tokenization_spaces=False)
        assert prefix.rstrip("\ufffd") == prompt[: token.end]


def test_a_character_split_across_tokens_belongs_to_the_token_holding_its_last_byte(
    gpt2_tokenizer,
):
    prompt = "I 🐱"
    tokens = tokenize(gpt2_tokenizer, prompt)
    cat = [t for t in tokens if "🐱" in prompt[t.start : t.end]]
    assert len(cat) == 1 and cat[0] is tokens[-1]
    empty = [t for t in tokens if t.start == t.end]  # GPT-2 splits the emoji's 4 bytes
    assert empty and all(t.text == "" and t.display.startswith("<0x") for t in empty)
    assert all(t.split for t in empty) and cat[0].split
    check_tiling(prompt, tokens)


@pytest.mark.parametrize("prompt", TRICKY)
def test_decoding_all_ids_gives_back_the_prompt(gpt2_tokenizer, prompt):
    ids = [t.id for t in tokenize(gpt2_tokenizer, prompt)]
    assert gpt2_tokenizer.decode(ids, clean_up_tokenization_spaces=False) == prompt


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_offsets_tile_any_text(gpt2_tokenizer, prompt):
    tokens = tokenize(gpt2_tokenizer, prompt)
    assert [t.id for t in tokens] == gpt2_tokenizer(prompt)["input_ids"]
    check_tiling(prompt, tokens)
    ids = [t.id for t in tokens]
    assert gpt2_tokenizer.decode(ids, clean_up_tokenization_spaces=False) == prompt


SCRIPTS = [
    "Die Bären über der Brücke",
    "I love 🍕 and ☕",
    "我喜欢学习语言模型",
    "mixed 猫 cat 🐱 кот — naïve",
]
_SHOWN_BYTE = re.compile(r"<0x([0-9A-F]{2})>")
_INVISIBLE = str.maketrans({"␣": " ", "↵": "\n", "⇥": "\t", "␍": "\r", "⍽": "\xa0"})


def bytes_of_display(shown: str) -> bytes:
    """The bytes a display string stands for: <0xNN> is one byte, the rest is UTF-8 text."""
    out, last = b"", 0
    for match in _SHOWN_BYTE.finditer(shown):
        out += shown[last : match.start()].translate(_INVISIBLE).encode()
        out += bytes([int(match.group(1), 16)])
        last = match.end()
    return out + shown[last:].translate(_INVISIBLE).encode()


@pytest.mark.parametrize("prompt", SCRIPTS)
def test_every_token_shows_exactly_the_bytes_its_id_holds(gpt2_tokenizer, prompt):
    """No chip shows a character its id does not contain: the display, read back as bytes, is the
    id's own bytes, and it is the same wherever the id appears (decoded from the id alone)."""
    for token in tokenize(gpt2_tokenizer, prompt):
        own = piece_bytes(gpt2_tokenizer, [token.id])[0]
        assert bytes_of_display(token.display) == own, (token.display, own)
        assert token.display == token_display(gpt2_tokenizer, token.id)
        assert token.split == (b"\xef\xbf\xbd" in own.decode("utf-8", "replace").encode())


def test_a_space_with_the_first_byte_of_a_letter_is_not_shown_as_a_space(gpt2_tokenizer):
    tokens = tokenize(gpt2_tokenizer, "Die Bären über der Brücke")
    space = token_display(gpt2_tokenizer, gpt2_tokenizer.encode(" ")[0])
    assert space == "␣"
    halves = [t for t in tokens if t.split]
    assert halves and all(t.display != space and "<0x" in t.display for t in halves)
    assert all("ü" not in t.display for t in halves)  # über's ü is two tokens: shown as bytes
    assert [t.display for t in tokens if t.display == "ü"] == ["ü"]  # Brücke's is one token


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_a_split_token_names_the_characters_it_holds_part_of(model, request):
    """A learner sees <0xE6> and is told which character those bytes belong to: the characters
    the tokenizer's own offsets give to more than one token, on byte-level BPE (SmolLM2) and
    byte fallback (Gemma 3, after its BOS); and Gemma's byte tokens follow the same rule as
    GPT-2's (a character belongs to the token holding its last byte)."""
    tokenizer = request.getfixturevalue(model).tokenizer
    prompt = "Der Bär läuft über 東京 🎉👍 and 𓀀 here \U000f0000"
    tokens = tokenize(tokenizer, prompt)
    offsets = tokenizer(prompt, return_offsets_mapping=True)["offset_mapping"]
    touched = [0] * len(prompt)
    for start, end in offsets:
        for i in range(start, end):
            touched[i] += 1
    for token, (start, end) in zip(tokens, offsets, strict=True):
        shared = "".join(dict.fromkeys(prompt[i] for i in range(start, end) if touched[i] > 1))
        assert token.part_of == shared and token.split == bool(shared), token
    split = [t for t in tokens if t.split]
    assert {c for t in split for c in t.part_of} >= {"𓀀", "\U000f0000"}  # split on both
    assert "".join(t.text for t in tokens if t.id not in tokenizer.all_special_ids) == prompt
    holders = [t.text for t in split if "𓀀" in t.part_of]  # four bytes, four tokens on both
    assert holders == ["", "", "", "𓀀"]
