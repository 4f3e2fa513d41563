"""The page on Gemma 3 270M, the second real model offline: every stage on the IOI prompt, and the
comparison with SmolLM2 by depth. The numbers are lmscope's own analysis of the same model (itself
checked against transformers' GGUF load in tests/test_gemma3.py)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from test_dashboard import figure, open_experiment, wait_for_stages
from test_investigate import wait_for_figure

import lmscope
from lmscope.core.catalog import SMOLLM2_ID

pytestmark = pytest.mark.browser
expect.set_options(timeout=60_000)  # a 262k-token vocabulary: each step takes seconds here

IOI = "When Mary and John went to the store, John gave a drink to"


def test_every_stage_and_the_comparison_with_smollm2_on_gemma3(
    page, dashboard_url, dashboard_service, gemma3, artifacts
):
    key = dashboard_service.models.add(gemma3)
    expected = lmscope.analyze(gemma3, IOI).top_predictions(1)[0]
    assert expected.display == "␣Mary"

    page.goto(f"{dashboard_url}/?model={key}")
    card = page.locator("#model-card-body")
    expect(card.locator("h2")).to_contain_text("Gemma 3 270M")
    expect(card).to_contain_text("512 tokens on 15 of 18 layers")  # its sliding window
    expect(card).to_contain_text("Gemma Terms of Use")
    expect(card).to_contain_text("4 per layer, 72 in all (1 key/value head)")
    expect(card).to_contain_text("reproduces this model")
    card.screenshot(path=str(artifacts / "gemma3-card.png"))
    page.get_by_role("button", name="Name mover (IOI)").click()
    wait_for_stages(page)
    expect(page.locator("#predicted-token .chip-text")).to_have_text("␣Mary")
    top10 = figure(page, "top10")
    assert top10["customdata"][0] == expected.id
    assert abs(top10["x"][0] - expected.probability) < 1e-4
    expect(page.locator(".head-cell")).to_have_count(18 * 4)
    expect(page.locator(".sliding-window")).to_contain_text("L5, L11, L17 read the whole prompt")
    expect(page.locator(".kv-groups")).to_contain_text("read only 1 key/value head,")
    for stage in range(1, 6):
        page.locator(f"#stage-{stage}").screenshot(path=str(artifacts / f"gemma3-stage{stage}.png"))

    open_experiment(page, "comparison")
    page.fill("#inv-compare-custom", SMOLLM2_ID)
    page.click("#inv-compare-run")
    wait_for_figure(page, "inv-compare")
    tables = page.locator("#inv-compare-predictions table")
    expect(tables).to_have_count(2)
    for table in tables.all():  # both real models answer Mary
        expect(table.locator("tbody tr").first.locator("td").nth(1)).to_have_text("␣Mary")
    names = page.evaluate(
        "id => document.getElementById(id).querySelector('.js-plotly-plot').data"
        ".map(trace => trace.name)",
        '{"kind":"figure","name":"inv-compare"}',
    )
    assert "first-token heads (sink at least half)" in names
    page.locator("#stage-6").screenshot(path=str(artifacts / "gemma3-compare-smollm2.png"))
