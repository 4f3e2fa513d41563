"""Text from a model's vocabulary or a user's prompt shows as itself and never runs or renders.

The model is built here: the real GPT-2 tokenizer plus tokens that are script, JSX braces and HTML,
wired so that the model predicts them. A page that parsed any of them would open a dialog, grow an
element, or lose a chip.
"""

from __future__ import annotations

import pytest
import torch
from playwright.sync_api import expect
from test_dashboard import analyze, chips, figure, open_demo, wait_for_stages
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

from lmscope.core.catalog import DEMO_PATH
from lmscope.core.loading import from_model
from lmscope.core.tokens import token_display

pytestmark = pytest.mark.browser

HOSTILE = [
    "{[].constructor.constructor('alert(document.domain)')()}",
    "<img src=x onerror=alert(1)>",
    "<script>alert(2)</script>",
    "`${alert(3)}`",
    "<b>bold</b>",
    "&amp;",
    "{}",
]
PROMPT = "x = {} and " + " ".join(HOSTILE) + ' then \\( \\frac{a}{b} \\) {"k": [1]}'


@pytest.fixture(scope="module")
def hostile_model():
    """A 2-layer GPT-2 whose vocabulary holds HOSTILE and whose top predictions are those tokens."""
    tokenizer = GPT2TokenizerFast.from_pretrained(DEMO_PATH)
    tokenizer.add_tokens(HOSTILE)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_layer=2,
        n_head=4,
        n_embd=64,
        n_positions=128,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # the final norm outputs one direction; the hostile rows point along it
        direction = torch.randn(config.n_embd)
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(direction)
        for rank, token in enumerate(HOSTILE):
            row = tokenizer.convert_tokens_to_ids(token)
            model.lm_head.weight[row] = direction * (12 - rank) / direction.norm() ** 2
    return from_model(model, tokenizer, "hostile-vocab"), tokenizer


def test_hostile_tokens_show_as_text_and_run_nothing(
    page, dashboard_url, dashboard_service, hostile_model, artifacts
):
    lm, tokenizer = hostile_model
    key = dashboard_service.models.add(lm)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(dashboard_url)
    page.fill("#model-custom", key)
    page.click("#model-load")
    expect(page.locator("#model-card-body h2")).to_contain_text("hostile-vocab")
    page.fill("#prompt", PROMPT)
    page.click("#analyze")
    wait_for_stages(page)

    # Every token is a chip showing exactly its text, braces and angle brackets included.
    ids = tokenizer(PROMPT)["input_ids"]
    texts = [tokenizer.decode([i]).replace(" ", "␣") for i in ids]
    assert chips(page) == (texts, [str(i) for i in ids])
    shown = [token.replace(" ", "␣") for token in HOSTILE]
    assert set(shown) <= set(texts)

    # The prediction is the first hostile token, shown as text in the sentence and the top 10.
    expect(page.locator("#predicted-token .chip-text")).to_have_text(shown[0])
    expect(page.locator("#stage-5 .prediction strong")).to_have_text(shown[0])
    top10 = figure(page, "top10")
    assert top10["customdata"][: len(HOSTILE)] == tokenizer.convert_tokens_to_ids(HOSTILE)
    labels = page.locator('[id*="top10"] .ytick text').all_text_contents()
    assert {f"{rank}. {token}" for rank, token in enumerate(shown, 1)} <= set(labels), labels

    # The pass on one screen and the line view show them as text too.
    expect(page.locator("#flow-diagram .flow-pred-text").first).to_have_text(shown[0])
    lines = page.locator(".lines-queries .lines-token").all_inner_texts()
    assert lines == texts[-len(lines) :] and set(shown) <= set(lines)

    # Nothing was parsed: no dialog, no element made from a token.
    page.locator("#stage-5").screenshot(path=str(artifacts / "hostile-vocab-output.png"))
    page.locator("#stage-1").screenshot(path=str(artifacts / "hostile-vocab-tokens.png"))
    assert dialogs == []
    for selector in (
        "img[src=x]", "#stage-1 b", "#stage-5 b", "#stage-5 img", "#stage-1 script",
        "#stage-0 b", "#stage-0 img", "#attn-lines b", "#attn-lines img",
    ):  # fmt: skip
        expect(page.locator(selector)).to_have_count(0)


def test_a_character_split_over_tokens_shows_as_its_bytes_in_a_dashed_chip(
    page, dashboard_url, gpt2_tokenizer, artifacts
):
    """'über' is ' ' + the first byte of ü, then its second byte: two chips that show those
    bytes, not a space chip and an 'ü' chip; 'Brücke' has ü as one token, shown as ü."""
    open_demo(page, dashboard_url)
    analyze(page, "Die Bären über der Brücke")
    texts, ids = chips(page)
    assert texts == [token_display(gpt2_tokenizer, int(i)) for i in ids]
    split = page.locator("#token-chips .chip-split .chip-text").all_inner_texts()
    assert split == ["␣<0xC3>", "<0xBC>"]
    for chip in page.locator("#token-chips .chip-split").all():  # which character, named
        assert '; part of "ü" (U+00FC LATIN SMALL LETTER U WITH DIAERESIS), split over' in (
            chip.get_attribute("title")
        )
    assert texts.count("ü") == 1 and "␣" not in texts
    page.locator("#stage-1").screenshot(path=str(artifacts / "tokens-split-character.png"))
