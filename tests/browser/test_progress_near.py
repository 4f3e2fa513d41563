"""Progress and Cancel where the work was started: an experiment run from the Investigation
panel, far below the status line, shows its progress and a Cancel button in the panel."""

from __future__ import annotations

import threading

import pytest
from playwright.sync_api import expect
from test_dashboard import analyze, open_demo, open_experiment

from lmscope.core import jobs
from lmscope.core.jobs import CANCELLED
from lmscope.dashboard.stages.investigate import attribution as attribution_panel

pytestmark = pytest.mark.browser


def test_an_experiment_shows_progress_and_cancel_in_the_panel(
    page, dashboard_url, monkeypatch, artifacts
):
    stopped = threading.Event()

    def slow_attribution(*_args, **_kwargs):
        """Work that reports its progress and runs until it is cancelled."""
        try:
            for done in range(10_000):
                jobs.report(done, 10_000, "path point")
                stopped.wait(0.05)
        finally:
            stopped.set()

    monkeypatch.setattr(attribution_panel, "token_attribution", slow_attribution)
    open_demo(page, dashboard_url)
    analyze(page, "The cat sat on the mat")
    open_experiment(page, "attribution")
    near = page.locator(".progress-near")
    expect(near).to_be_hidden()
    page.locator("#inv-attr-run").scroll_into_view_if_needed()
    page.click("#inv-attr-run")
    expect(near).to_be_visible()
    expect(near).to_contain_text("Token attribution: path point")
    expect(near).to_be_in_viewport()  # where the button was pressed, not 9,000 px above
    page.screenshot(path=artifacts / "progress-near.png")
    near.get_by_role("button", name="Cancel").click()
    assert stopped.wait(30)
    expect(page.locator("#inv-message")).to_contain_text(CANCELLED)
    expect(near).to_be_hidden()
    expect(page.locator("#inv-attr-run")).to_be_enabled()
