"""Long work is offered with its estimate and run on the user's word, not refused: an analysis and
an experiment over the time limit each show the estimate and a button that runs them anyway (with
progress and Cancel), once."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from test_dashboard import analyze, open_demo, open_experiment, shown_analysis, wait_for_stages
from test_investigate import wait_for_figure

from lmscope.core import budget

pytestmark = pytest.mark.browser

PROMPT = "When Mary and John went to the store, John gave a drink to"


def test_an_analysis_over_the_time_limit_runs_when_the_user_says_so(
    page, dashboard_url, monkeypatch, artifacts
):
    open_demo(page, dashboard_url)
    monkeypatch.setenv(budget.SECONDS_ENV, "1e-9")  # every request is over it
    previous = shown_analysis(page)
    page.fill("#prompt", PROMPT)
    page.click("#analyze")
    refused = page.locator("#message .error")
    expect(refused).to_contain_text("This analysis would take about")
    anyway = refused.get_by_role("button", name="Run it anyway")
    expect(anyway).to_contain_text("progress and can be cancelled")
    page.locator("#message").screenshot(path=str(artifacts / "long-work-offered.png"))
    assert shown_analysis(page) == previous  # nothing ran
    anyway.click()
    wait_for_stages(page, previous)
    expect(page.locator("#message .ok")).to_contain_text("Analyzed")
    # The confirmation was for that one start: the next Analyze is refused again.
    page.click("#analyze")
    expect(page.locator("#message .error")).to_contain_text("would take")


def test_an_experiment_over_the_time_limit_runs_when_the_user_says_so(
    page, dashboard_url, monkeypatch
):
    open_demo(page, dashboard_url)
    analyze(page, PROMPT)
    open_experiment(page, "ablation")
    monkeypatch.setenv(budget.SECONDS_ENV, "1e-9")
    page.click("#inv-scan-run")
    refused = page.locator("#inv-message .error")
    expect(refused).to_contain_text("This ablation scan would take")
    refused.get_by_role("button", name="Run it anyway").click()
    wait_for_figure(page, "inv-scan")
    expect(page.locator("#inv-message .error")).to_have_count(0)
