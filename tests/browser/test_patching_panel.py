"""The activation-patching panel as a person uses it: the demo's repeated sequence against a
corruption, AtP beside the exact head scan (both equal to the library's), their agreement, the
tokens on the axis as text, and a bad corruption refused."""

from __future__ import annotations

import pytest
import torch
from playwright.sync_api import expect
from test_dashboard import analyze, open_demo, open_experiment
from test_investigate import graph_id, traces, wait_for_figure

from lmscope.experiments.patching import patch

pytestmark = pytest.mark.browser

WORDS = " apple river chair cloud stone window garden paper music horse".split()
OTHER = " table green light money water summer paint bread glass train".split()
CLEAN = " " + " ".join(WORDS + WORDS[:4])
CORRUPT = " " + " ".join(WORDS + OTHER[:4])


def test_patching_panel_shows_atp_beside_the_exact_scan(
    page, dashboard_url, dashboard_service, artifacts
):
    demo = dashboard_service.model("demo")
    open_demo(page, dashboard_url)
    analyze(page, CLEAN)
    open_experiment(page, "patching")
    page.fill("#inv-target", "␣" + WORDS[4].strip())
    page.fill("#inv-patch-corrupt", CORRUPT)
    page.check("#inv-patch-component input[value='heads']")
    page.click("#inv-patch-exact-run")
    wait_for_figure(page, "inv-patch-exact")
    wait_for_figure(page, "inv-patch-atp")
    expected = patch(demo, CLEAN, CORRUPT, " " + WORDS[4], component="heads", scan="both")
    (exact,) = traces(page, "inv-patch-exact")
    (atp,) = traces(page, "inv-patch-atp")
    torch.testing.assert_close(torch.tensor(exact["z"]), expected.exact, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.tensor(atp["z"]), expected.atp, atol=1e-4, rtol=0)
    agreement = expected.agreement()
    expect(page.locator("#inv-patch-agreement")).to_contain_text(
        f"Spearman {agreement['spearman']:.3f}"
    )
    expect(page.locator("#inv-patch-checked tr")).to_have_count(1 + len(expected.checked))
    page.locator("#stage-6").screenshot(path=str(artifacts / "investigate-patching-heads.png"))

    # Positions: the x axis names each position's tokens, as text ("clean / corrupted").
    page.check("#inv-patch-component input[value='resid']")
    page.click("#inv-patch-atp-run")
    expect(page.locator("#inv-patch-runs")).to_contain_text("patching of the resid")
    expect(page.locator(f"[id='{graph_id('inv-patch-exact')}']")).to_be_hidden()
    ticks = page.locator(f"[id='{graph_id('inv-patch-atp')}'] .xtick text").all_text_contents()
    assert f"13·␣{WORDS[3].strip()} / ␣{OTHER[3].strip()}" in ticks
    page.locator(f"[id='{graph_id('inv-patch-atp')}']").screenshot(
        path=str(artifacts / "investigate-patching-resid.png")
    )

    # A corruption of another length: one clear message, and the panel keeps working.
    page.fill("#inv-patch-corrupt", " apple river")
    page.click("#inv-patch-atp-run")
    error = page.locator("#inv-message .error")
    expect(error).to_contain_text("14 tokens and the corrupted prompt 2")
    page.fill("#inv-patch-corrupt", CORRUPT)
    page.click("#inv-patch-atp-run")
    expect(error).to_have_count(0)
