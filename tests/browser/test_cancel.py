"""Long work in the page shows its progress and can be stopped: Cancel, or a newer Analyze."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from test_dashboard import chips, expected_chips, long_prompt, wait_for_stages

from lmscope.core.jobs import CANCELLED, Cancelled


@pytest.fixture
def recorded(dashboard_service, monkeypatch) -> dict[str, list[str]]:
    """What each analysis the server ran became: 'finished' or the Cancelled message, by prompt."""
    outcomes: dict[str, list[str]] = {}
    plain = dashboard_service.analyze

    def analyze_and_record(model, prompt, *args, **kwargs):
        try:
            result = plain(model, prompt, *args, **kwargs)
        except Cancelled as error:
            outcomes.setdefault(prompt, []).append(str(error))
            raise
        outcomes.setdefault(prompt, []).append("finished")
        return result

    monkeypatch.setattr(dashboard_service, "analyze", analyze_and_record)
    return outcomes


def load(page: Page, dashboard_url: str, key: str) -> None:
    page.goto(dashboard_url)
    expect(page.locator("#model-card-body h2")).to_contain_text("SmolLM2", timeout=60_000)
    page.fill("#model-custom", key)
    page.click("#model-load")
    expect(page.locator("#model-card-body h2")).to_contain_text("GPT-2")


def start_long_analysis(page: Page, prompt: str) -> None:
    """Press Analyze on `prompt` and wait until the status line shows the pass's progress."""
    page.fill("#prompt", prompt)
    page.click("#analyze")
    expect(page.locator("#status")).to_contain_text("layer", timeout=60_000)
    expect(page.locator("#cancel")).to_be_visible()


def test_cancel_stops_a_long_analysis_and_the_page_keeps_working(
    page, dashboard_url, dashboard_service, small_gpt2, gpt2_tokenizer, recorded, artifacts
):
    """1,000 tokens on GPT-2 Small's shape: progress by layer, Cancel, then a new analysis."""
    key = dashboard_service.models.add(small_gpt2)
    load(page, dashboard_url, key)
    slow = long_prompt(gpt2_tokenizer, 1000)
    start_long_analysis(page, slow)
    expect(page.locator("#status")).to_contain_text("Analyzing the prompt with")
    page.screenshot(path=artifacts / "cancel-progress.png")
    page.click("#cancel")
    expect(page.locator("#message")).to_have_text(CANCELLED)
    assert recorded[slow] == [CANCELLED]
    expect(page.locator("#status")).to_have_text("")
    expect(page.locator("#cancel")).to_be_hidden()
    page.screenshot(path=artifacts / "cancel-done.png")
    quick = "The page still works"
    page.fill("#prompt", quick)
    page.click("#analyze")
    wait_for_stages(page)
    assert chips(page) == expected_chips(gpt2_tokenizer, quick)
    assert recorded[quick] == ["finished"]


def test_a_newer_analyze_cancels_the_older_one(
    page, dashboard_url, dashboard_service, small_gpt2, gpt2_tokenizer, recorded
):
    key = dashboard_service.models.add(small_gpt2)
    load(page, dashboard_url, key)
    slow = long_prompt(gpt2_tokenizer, 1000)
    start_long_analysis(page, slow)
    quick = "A newer prompt wins"
    page.fill("#prompt", quick)
    page.click("#analyze")
    wait_for_stages(page)
    assert recorded[slow] == ["Cancelled: a newer request from this tab replaced it."]
    assert recorded[quick] == ["finished"]
    assert chips(page) == expected_chips(gpt2_tokenizer, quick)
    expect(page.locator("#message")).to_contain_text("Analyzed")
    expect(page.locator("#prompt")).to_have_value(quick)
