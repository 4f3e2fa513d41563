"""The ablation scan's AtP estimate as a person uses it: the button draws the library's estimate,
its strongest heads checked exactly in a table, and the agreement once the exact scan has run."""

from __future__ import annotations

import pytest
import torch
from playwright.sync_api import expect
from test_dashboard import analyze, open_demo
from test_investigate import graph_id, traces, wait_for_figure

from lmscope.experiments.ablation_atp import ablation_estimate

pytestmark = pytest.mark.browser

PROMPT = "When Mary and John went to the store, John gave a drink to"


def test_the_atp_button_draws_the_estimate_and_checks_its_top_heads(
    page, dashboard_url, dashboard_service, artifacts
):
    demo = dashboard_service.model("demo")
    open_demo(page, dashboard_url)
    analyze(page, PROMPT)
    page.fill("#inv-target", "␣Mary")
    page.fill("#inv-wrong", "␣John")
    page.fill("#inv-scan-k", "3")
    page.click("#inv-scan-atp-run")
    wait_for_figure(page, "inv-scan-atp")
    expected = ablation_estimate(demo, PROMPT, "zero", " Mary", " John", exact=True, check=3)
    (atp,) = traces(page, "inv-scan-atp")
    torch.testing.assert_close(torch.tensor(atp["z"]), expected.atp, atol=1e-4, rtol=0)
    rows = page.locator("#inv-scan-checked tr")
    expect(rows).to_have_count(1 + 3)
    first = expected.checked[0]
    expect(rows.nth(1)).to_have_text(f"{first['name']}{first['atp']:.3f}{first['exact']:.3f}")
    expect(page.locator("#inv-scan-agreement-line")).to_have_count(0)  # no exact scan yet

    page.click("#inv-scan-run")
    wait_for_figure(page, "inv-scan")
    agreement = expected.agreement()
    expect(page.locator("#inv-scan-agreement-line")).to_have_text(
        f"AtP against exact: Spearman {agreement['spearman']:.3f}, top-{agreement['top_k']} "
        f"overlap {agreement['top_k_overlap']}/{agreement['top_k']}."
    )
    scrolled = page.evaluate("window.scrollY")  # bounding boxes are in viewport coordinates
    top = page.locator("#inv-scan-body").bounding_box()
    bottom = page.locator(f"[id='{graph_id('inv-scan-atp')}']").bounding_box()
    height = bottom["y"] + bottom["height"] - top["y"]
    page.screenshot(path=str(artifacts / "investigate-ablation-atp.png"), full_page=True,
                    clip={"x": 0, "y": top["y"] + scrolled, "width": 1280, "height": height})  # fmt: skip
