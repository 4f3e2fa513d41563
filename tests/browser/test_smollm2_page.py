"""The page on the real model it opens on offline, SmolLM2-135M: every stage and the Investigation
panel, checked against transformers' own load of the same GGUF file."""

from __future__ import annotations

import pytest
import torch
from playwright.sync_api import expect
from test_dashboard import figure, wait_for_stages

pytestmark = pytest.mark.browser

IOI = "When Mary and John went to the store, John gave a drink to"


def test_every_stage_and_an_ablation_on_smollm2(page, dashboard_url, smollm2_hf, artifacts):
    model, tokenizer = smollm2_hf
    ids = tokenizer(IOI)["input_ids"]
    with torch.no_grad():
        probs = model(torch.tensor([ids])).logits[0, -1].softmax(-1)
    best = int(probs.argmax())
    assert tokenizer.decode([best]) == " Mary"

    page.goto(dashboard_url)  # offline with no GPT-2: the page opens on SmolLM2
    expect(page.locator("#model-card-body h2")).to_contain_text("SmolLM2 135M Instruct")
    page.get_by_role("button", name="Name mover (IOI)").click()
    wait_for_stages(page)
    expect(page.locator("#predicted-token .chip-text")).to_have_text("␣Mary")
    top10 = figure(page, "top10")
    assert top10["customdata"][0] == best
    assert abs(top10["x"][0] - float(probs[best])) < 1e-4
    expect(page.locator(".head-cell")).to_have_count(270)
    for stage in range(1, 6):
        page.locator(f"#stage-{stage}").screenshot(
            path=str(artifacts / f"smollm2-stage{stage}.png")
        )

    # Ablate one head picked by its name; the page reports the probabilities before and after.
    page.get_by_label("adds it to / removes it from the ablation set").check()
    page.locator('.head-cell[data-head="L17-H3"]').click()
    expect(page.locator("#inv-chips .chip-inline")).to_have_text(["L17-H3"])
    page.click("#inv-ablate")
    expect(page.locator("#inv-top-before")).to_have_text("␣Mary")
    page.locator("#stage-6").screenshot(path=str(artifacts / "smollm2-investigate.png"))
