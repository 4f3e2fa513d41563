"""The steering panel's layer and position follow the page's focus (a clicked head, a clicked
query token) until the user types their own, and Steer uses what the fields show."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from test_dashboard import analyze, open_demo, open_experiment

pytestmark = pytest.mark.browser

PROMPT = "The cat sat on the mat. The cat sat on the"


def test_steering_layer_and_position_follow_the_focus_until_typed(page, dashboard_url):
    open_demo(page, dashboard_url)
    analyze(page, PROMPT)
    open_experiment(page, "steering")
    layer, position = page.locator("#inv-steer-layer"), page.locator("#inv-steer-position")
    expect(layer).to_have_value("")  # empty: the library's default layer, 30% of the way in
    expect(position).to_have_value("")

    page.locator('.head-cell[data-head="L1-H2"]').click()  # focus.layer = 1
    expect(layer).to_have_value("1")
    page.locator('#attn-token-chips [data-token-index="4"]').click()  # focus.position = 4
    expect(position).to_have_value("4")

    page.fill("#inv-steer-layer", "0")  # the user's own layer stops following
    page.locator('.head-cell[data-head="L1-H0"]').click()
    expect(page.locator("#head-detail")).to_contain_text("L1-H0")
    page.locator('#attn-token-chips [data-token-index="2"]').click()
    expect(position).to_have_value("2")  # the position still follows
    expect(layer).to_have_value("0")

    page.click("#inv-steer-run")
    expect(page.locator("#inv-steer-what")).to_contain_text("entering layer 0 at position 2 on")
