"""The generation panel as a learner uses it: sampling sliders that reshape the next-token
distribution as they move, and generated tokens that open every stage at their position.

Expected values come from the demo model run plainly through transformers (no lmscope hooks)
and from `generate` called here.
"""

from __future__ import annotations

import pytest
import torch
from playwright.sync_api import Page, expect
from test_dashboard import (
    DEMO_NAME,
    analyze,
    chips,
    open_demo,
    open_experiment,
    shown_analysis,
    wait_for_stages,
)
from transformers import GPT2LMHeadModel

from lmscope.core.catalog import DEMO_PATH
from lmscope.experiments.generation import GenerationSettings, generate

pytestmark = pytest.mark.browser
expect.set_options(timeout=30_000)  # a loaded machine: the first page load also loads SmolLM2

PROMPT = "The cat sat on the mat. The cat sat on the"
DISTRIBUTION = '{"kind":"figure","name":"inv-gen-distribution"}'
FOCUSED = "rgb(255, 213, 79)"  # stages/tokens.py FOCUSED


@pytest.fixture(scope="module")
def reference() -> GPT2LMHeadModel:
    return GPT2LMHeadModel.from_pretrained(DEMO_PATH, dtype=torch.float32).eval()


def logits_of(model: GPT2LMHeadModel, ids: list[int]) -> torch.Tensor:
    """Every position's logits from a plain transformers pass `(T, vocab)`."""
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def bars(page: Page, graph_id: str = DISTRIBUTION) -> list[dict]:
    """Each bar trace of a figure on the page: name, token ids and probabilities."""
    return page.evaluate(
        "id => [...document.getElementById(id).querySelector('.js-plotly-plot').data]"
        ".map(d => ({name: d.name, ids: d.customdata, p: d.x}))",
        graph_id,
    )


def slider_value(page: Page, slider: str) -> float:
    return float(page.locator(f"#{slider} [role=slider]").get_attribute("aria-valuenow"))


def expect_disabled(page: Page, slider: str, disabled: bool) -> None:
    root = page.locator(f"#{slider} .dash-slider-root")
    if disabled:
        expect(root).to_have_attribute("aria-disabled", "true")
    else:
        expect(root).not_to_have_attribute("aria-disabled", "true")


def test_sliders_reshape_the_distribution_as_they_move(page, dashboard_url, gpt2_tokenizer,
                                                       reference, artifacts):  # fmt: skip
    open_demo(page, dashboard_url)
    analyze(page, PROMPT)
    open_experiment(page, "generation")
    logits = logits_of(reference, gpt2_tokenizer(PROMPT)["input_ids"])[-1]

    # Greedy: the sliders do not apply and are disabled; the model's own distribution is drawn.
    expect(page.locator(f"[id='{DISTRIBUTION}'] .js-plotly-plot")).to_be_visible()
    for slider in ("inv-gen-temperature", "inv-gen-top-k", "inv-gen-top-p"):
        expect_disabled(page, slider, True)
    expect(page.locator("#inv-gen-seed")).to_be_disabled()
    (model,) = bars(page)
    assert model["ids"] == logits.topk(len(model["ids"])).indices.tolist()
    assert model["p"] == pytest.approx(logits.softmax(-1)[model["ids"]].tolist(), abs=1e-5)
    page.get_by_role("radio", name="beam search").check()
    expect(page.locator("#inv-gen-beams")).to_be_enabled()
    expect_disabled(page, "inv-gen-temperature", True)

    # Sampling: the sliders come alive; the drawn distribution is the one sampling uses.
    page.get_by_role("radio", name="sampling").check()
    for slider in ("inv-gen-temperature", "inv-gen-top-k", "inv-gen-top-p"):
        expect_disabled(page, slider, False)
    expect(page.locator("#inv-gen-beams")).to_be_disabled()
    page.wait_for_function(f"() => document.getElementById('{DISTRIBUTION}')"
                           ".querySelector('.js-plotly-plot').data.length === 2")  # fmt: skip
    first = bars(page)[1]
    assert first["name"] == "sampling draws from"

    # Drag the temperature thumb toward 0.05: while the mouse is still down, the bars change.
    thumb = page.locator("#inv-gen-temperature [role=slider]")
    thumb.scroll_into_view_if_needed()
    start = thumb.bounding_box()
    rail = page.locator("#inv-gen-temperature .dash-slider-root").bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(rail["x"] + rail["width"] * 0.2, start["y"] + start["height"] / 2, steps=8)
    page.wait_for_function(
        "([id, old]) => { const d = document.getElementById(id).querySelector('.js-plotly-plot')"
        ".data; return d.length === 2 && d[1].x[0] !== old; }",
        arg=[DISTRIBUTION, first["p"][0]],
    )
    page.mouse.up()
    page.wait_for_function(
        "() => Number(document.querySelector('#inv-gen-temperature [role=slider]')"
        ".getAttribute('aria-valuenow')) < 1"
    )
    temperature = slider_value(page, "inv-gen-temperature")
    expected = GenerationSettings("sample", temperature=temperature).distribution(logits)
    page.wait_for_function(
        "([id, want]) => Math.abs(document.getElementById(id).querySelector('.js-plotly-plot')"
        ".data[1].x[0] - want) < 1e-5",
        arg=[DISTRIBUTION, float(expected[int(logits.argmax())])],
    )
    drawn = bars(page)[1]
    assert drawn["p"] != first["p"]
    assert drawn["p"] == pytest.approx(expected[drawn["ids"]].tolist(), abs=1e-5)
    assert drawn["p"][0] > first["p"][0]  # a lower temperature sharpens the distribution
    page.locator("#inv-gen-sliders").screenshot(path=str(artifacts / "generation-sliders.png"))

    # Top-k by keyboard: one step right from "off" keeps one token, which gets all the mass.
    page.locator("#inv-gen-top-k [role=slider]").press("ArrowRight")
    expect(page.locator("#inv-gen-dist-note")).to_contain_text("can draw 1 of")
    drawn = bars(page)[1]
    assert drawn["p"][0] == pytest.approx(1.0, abs=1e-6) and max(drawn["p"][1:]) == 0
    page.locator("#stage-6 #inv-gen-dist-note").screenshot(
        path=str(artifacts / "generation-topk-note.png")
    )


def test_clicking_a_generated_token_opens_every_stage_there(page, dashboard_url, dashboard_service,
                                                            gpt2_tokenizer, reference, artifacts):  # fmt: skip
    open_demo(page, dashboard_url)
    analyze(page, PROMPT)
    open_experiment(page, "generation")
    page.fill("#inv-gen-tokens", "8")
    page.click("#inv-gen-run")
    result = generate(dashboard_service.model("demo"), PROMPT, GenerationSettings("greedy", 8))
    expect(page.locator("#inv-gen-text")).to_have_text(result.text)
    buttons = page.locator("#inv-gen-tokens-row .gen-token")
    expect(buttons).to_have_count(len(result.ids))
    prompt_ids = gpt2_tokenizer(PROMPT)["input_ids"]
    ids = prompt_ids + result.ids
    logits = logits_of(reference, ids)

    # One click: prompt + generation analyzed in one pass, the stages follow the clicked token.
    before = shown_analysis(page)
    buttons.nth(3).click()
    after = wait_for_stages(page, before)
    position = len(prompt_ids) + 3
    expect(page.locator("#output-position")).to_have_attribute("data-position", str(position))
    # The tokens are exactly the generated ids (no re-tokenization), the clicked one marked.
    assert chips(page)[1] == [str(i) for i in ids]
    chip = page.locator(f"#token-chips .chip[data-token-index='{position}']")
    expect(chip).to_have_css("background-color", FOCUSED)
    # The output stage's predictions are the plain pass's at that position.
    probs = logits[position].softmax(-1)
    top10 = bars(page, '{"kind":"figure","name":"top10"}')[0]
    assert top10["ids"] == probs.topk(10).indices.tolist()
    assert top10["p"] == pytest.approx(probs[top10["ids"]].tolist(), abs=1e-4)
    expect(page.locator("#output-position")).to_contain_text(
        gpt2_tokenizer.decode([ids[position + 1]]).replace(" ", "␣")
    )
    expect(page.locator("#inv-gen-text")).to_have_text(result.text)  # the generation stays
    # The prompt box and the status say what the page now shows, and the stages come into view.
    expect(page.locator("#prompt")).to_have_value(PROMPT + result.text)
    expect(page.locator("#message")).to_contain_text(
        f"Analyzed {len(ids)} tokens with {DEMO_NAME}: the prompt's {len(prompt_ids)} and "
        f"{len(result.ids)} generated. Every stage follows generated token 4 (position {position})"
    )
    expect(page.locator("#stage-1")).to_be_in_viewport()
    expect(page.locator("#inv-gen-tokens-row")).not_to_be_in_viewport()
    page.screenshot(path=str(artifacts / "generation-token-opened.png"))
    page.locator("#stage-5").screenshot(path=str(artifacts / "generation-token-output.png"))
    page.locator("#stage-1").screenshot(path=str(artifacts / "generation-token-chips.png"))

    # Another token: no new pass (the same analysis), the stages move to it.
    buttons.nth(1).click()
    expect(page.locator("#output-position")).to_have_attribute(
        "data-position", str(len(prompt_ids) + 1)
    )
    top10 = bars(page, '{"kind":"figure","name":"top10"}')[0]
    assert top10["ids"][0] == int(logits[len(prompt_ids) + 1].argmax())
    assert shown_analysis(page) == after
    expect(page.locator("#message")).to_contain_text("follows generated token 2")
    page.locator("#stage-6").screenshot(path=str(artifacts / "generation-token-panel.png"))
