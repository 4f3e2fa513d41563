"""The steering panel and the contrastive target on the demo model, as a person uses them: every
value shown is compared with the library called directly here."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect
from test_dashboard import DEMO_NAME, analyze, open_experiment

from lmscope.core.tokens import display, running_text
from lmscope.experiments.ablation import ablation_scan
from lmscope.experiments.steering import steer

pytestmark = pytest.mark.browser

PROMPT = "The cat sat on the mat. The cat sat on the"


def open_demo(page, url: str) -> None:
    """The page on the demo model (test_dashboard's, waiting longer on a loaded machine)."""
    page.goto(f"{url}/?model=demo")
    expect(page.locator("#model-card-body h2")).to_contain_text(DEMO_NAME, timeout=60_000)


def graph_id(name: str) -> str:
    return json.dumps({"kind": "figure", "name": name}, separators=(",", ":"))


@pytest.fixture
def demo(dashboard_service):
    return dashboard_service.model("demo")


def test_steering_from_two_prompts_shows_the_library_result(page, dashboard_url, demo, artifacts):
    open_demo(page, dashboard_url)
    analyze(page, PROMPT)
    open_experiment(page, "steering")
    page.fill("#inv-steer-a", "The dog")
    page.fill("#inv-steer-b", "The cat")
    page.fill("#inv-steer-layer", "1")
    page.fill("#inv-steer-coefficient", "6")
    page.click("#inv-steer-run")
    steer_plot = page.locator(f"[id='{graph_id('inv-steer')}'] .js-plotly-plot")
    expect(steer_plot).to_be_visible(timeout=60_000)
    result = steer(demo, PROMPT, 1, 6.0, prompts=["The dog", "The cat"], new_tokens=20)
    top = result.top("after", 1)[0]
    expect(page.locator("#inv-steer-top-after")).to_have_text(display(top.text))
    expect(page.locator("#inv-steer-kl")).to_have_text(f"{result.kl:.4f}")
    expect(page.locator("#inv-steer-continuation-before")).to_have_text(
        running_text(result.generation_before.text)  # a newline shows as ↵, as in every chip
    )
    expect(page.locator("#inv-steer-continuation-after")).to_have_text(
        running_text(result.generation_after.text)
    )
    expect(page.locator("#inv-steer-what")).to_contain_text("not normalized")
    page.locator("#inv-steer-body").scroll_into_view_if_needed()
    page.locator("#stage-6").screenshot(path=str(artifacts / "investigate-steering.png"))

    # A token typed without its leading space is used as typed and flagged on the page.
    page.get_by_label("one token's unembedding direction").check()
    page.fill("#inv-steer-token", "dog")
    page.click("#inv-steer-run")
    notice = page.locator("#inv-steer-body .target-notice")
    expect(notice).to_contain_text("' dog'", timeout=60_000)
    expect(page.locator("#inv-steer-what")).to_contain_text("normalized to length 1")

    # Bad input: one line in the panel's message, and the page keeps working.
    page.fill("#inv-steer-layer", "9")
    page.click("#inv-steer-run")
    expect(page.locator("#inv-message")).to_contain_text("Layer 9 does not exist", timeout=60_000)


def test_the_scan_follows_a_logit_difference_and_says_so(page, dashboard_url, demo):
    open_demo(page, dashboard_url)
    analyze(page, PROMPT)
    page.fill("#inv-target", "mat")  # no leading space: another token than " mat"
    page.fill("#inv-wrong", "␣dog")
    page.click("#inv-scan-run")
    scan_plot = page.locator(f"[id='{graph_id('inv-scan')}'] .js-plotly-plot")
    expect(scan_plot).to_be_visible(timeout=60_000)
    scan = ablation_scan(demo, PROMPT, "zero", target="mat", wrong=" dog")
    expect(page.locator("#inv-scan-metric .metric-label")).to_have_text(
        f"Metric: {scan.metric.label}"
    )
    expect(page.locator("#inv-scan-metric .target-notice")).to_contain_text("' mat'")
    z = page.evaluate(
        "id => document.getElementById(id).querySelector('.js-plotly-plot').data[0].z",
        graph_id("inv-scan"),
    )
    if isinstance(z, dict):  # plotly's binary array form
        import base64

        import numpy as np

        z = np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"])).tolist()
    flat = [v for row in z for v in row] if isinstance(z[0], list) else z
    assert flat == pytest.approx(scan.effect.flatten().tolist(), abs=1e-4)


def test_smollm2s_default_steering_moves_the_prediction_and_keeps_text(
    page, dashboard_url, dashboard_service, artifacts
):
    """On SmolLM2 with the page's defaults (layer empty: 30% in; the library's coefficient) the
    panel says why they are the defaults, and the continuation is text, newlines shown as ↵."""
    prompt = "When Mary and John went to the store, John gave a drink to"
    page.goto(f"{dashboard_url}/?model=smollm2-135m-instruct")
    expect(page.locator("#model-card-body h2")).to_contain_text("SmolLM2", timeout=60_000)
    analyze(page, prompt)
    open_experiment(page, "steering")
    expect(page.locator("#inv-steer-layer")).to_have_value("")
    expect(page.locator("#inv-steer-defaults")).to_contain_text("measured on SmolLM2")
    page.click("#inv-steer-run")
    expect(page.locator("#inv-steer-what")).to_contain_text("entering layer 9", timeout=120_000)
    lm = dashboard_service.model("smollm2-135m-instruct")
    result = steer(lm, prompt, prompts=["Love", "Hate"])
    shown = page.locator("#inv-steer-continuation-after").inner_text()
    assert shown == running_text(result.generation_after.text)
    assert shown.count("↵") < len(result.generation_after.ids) / 2
    expect(page.locator("#inv-steer-top-after")).to_have_text(
        display(result.top("after", 1)[0].text)
    )
    page.locator("#inv-steer-body").scroll_into_view_if_needed()
    page.locator("#stage-6").screenshot(path=str(artifacts / "steering-default-smollm2.png"))
