"""Every experiment panel shows its result as code: the command line shown, run through
`lmscope.cli.main`, gives the panel's numbers; the Python call is text a notebook runs; the copy
button copies that text; and a result saved as a run of its one prompt is reopened in the Runs
section with the same numbers."""

from __future__ import annotations

import json
import shlex

import pytest
import torch
from playwright.sync_api import Page, expect
from test_dashboard import analyze, figure, open_demo, open_experiment
from test_patching_panel import CLEAN, CORRUPT, WORDS

import lmscope
from lmscope.cli import main

pytestmark = pytest.mark.browser


def shown_code(page: Page, body: str, part: str) -> str:
    """The text of one code block under a result (its Details opened first)."""
    details = page.locator(f"#{body}-code")
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    return page.locator(f"#{body}-code-{part}").inner_text()


def run_cli(line: str, capsys) -> dict:
    """The shown command line through `lmscope.cli.main`, with --json; its document."""
    words = shlex.split(line)
    assert words[0] == "lmscope"
    capsys.readouterr()
    assert main([*words[1:], "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def grid(page: Page, name: str) -> torch.Tensor:
    return torch.tensor(figure(page, name)["z"], dtype=torch.float64)


def test_each_panel_s_command_line_gives_its_numbers_and_a_result_saves_as_a_run(
    page, dashboard_url, dashboard_service, artifacts, capsys
):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_demo(page, dashboard_url)
    analyze(page, CLEAN)
    target = "␣" + WORDS[4].strip()

    # Patching (AtP over heads): `lmscope patch ... --json` is the heatmap.
    open_experiment(page, "patching")
    page.fill("#inv-target", target)
    page.fill("#inv-patch-corrupt", CORRUPT)
    page.check("#inv-patch-component input[value='heads']")
    page.click("#inv-patch-atp-run")
    expect(page.locator("#inv-patch-body-code")).to_be_visible()
    line = shown_code(page, "inv-patch-body", "cli")
    assert line.startswith("lmscope patch --model demo --clean ")
    doc = run_cli(line, capsys)
    torch.testing.assert_close(grid(page, "inv-patch-atp"), torch.tensor(doc["atp"], dtype=torch.float64),
                               atol=1e-4, rtol=0)  # fmt: skip
    python = shown_code(page, "inv-patch-body", "python")
    namespace: dict = {}
    exec(python, namespace)  # the page's own snippet, run as a notebook would
    torch.testing.assert_close(namespace["result"].atp.double(), grid(page, "inv-patch-atp"),
                               atol=1e-4, rtol=0)  # fmt: skip
    dataset = shown_code(page, "inv-patch-body", "dataset")
    assert dataset.startswith("lmscope run --model demo --data prompts.jsonl --experiment patch")
    assert "--component heads" in dataset and "--scan atp" in dataset

    # The copy button copies the text itself.
    page.locator("#inv-patch-body-code .copy").first.click()
    assert page.evaluate("navigator.clipboard.readText()") == python
    page.locator("#stage-6").screenshot(path=str(artifacts / "reproduce-patching.png"))

    # Saved as a run of this prompt: the Runs section watches it and opens it; its mean (n = 1)
    # is the panel's AtP estimate.
    page.click("#inv-patch-body-code button:has-text('Save as a run')")
    saved = page.locator("#inv-patch-body-code [data-run]")
    expect(saved).to_contain_text("Saved as run")
    run_id = saved.get_attribute("data-run")
    expect(
        page.locator(f"#runs-progress [data-run='{run_id}'][data-state='complete']")
    ).to_be_visible()
    expect(page.locator(f"#runs-opened-summary[data-run='{run_id}']")).to_be_visible()
    torch.testing.assert_close(grid(page, "runs-mean"), grid(page, "inv-patch-atp"),
                               atol=1e-4, rtol=0)  # fmt: skip
    expect(page.locator(f"#runs-table tr[data-run='{run_id}']")).to_contain_text("patch-prompt")

    # Direct logit attribution: `lmscope attribute ... --json`.
    open_experiment(page, "attribution")
    page.click("#inv-dla-run")
    expect(page.locator("#inv-dla-body-code")).to_be_visible()
    doc = run_cli(shown_code(page, "inv-dla-body", "cli"), capsys)
    torch.testing.assert_close(grid(page, "inv-dla-heads"), torch.tensor(doc["heads"], dtype=torch.float64),
                               atol=1e-4, rtol=0)  # fmt: skip

    # The ablation scan by AtP: `lmscope ablation-scan ... --json`.
    open_experiment(page, "ablation")
    page.click("#inv-scan-atp-run")
    expect(page.locator("#inv-scan-atp-body-code")).to_be_visible()
    line = shown_code(page, "inv-scan-atp-body", "cli")
    assert "--method atp" in line
    doc = run_cli(line, capsys)
    torch.testing.assert_close(grid(page, "inv-scan-atp"), torch.tensor(doc["atp"], dtype=torch.float64),
                               atol=1e-4, rtol=0)  # fmt: skip

    # Steering: its KL divergence, as the command line prints it.
    open_experiment(page, "steering")
    page.fill("#inv-steer-layer", "1")
    page.click("#inv-steer-run")
    expect(page.locator("#inv-steer-body-code")).to_be_visible()
    doc = run_cli(shown_code(page, "inv-steer-body", "cli"), capsys)
    expect(page.locator("#inv-steer-kl")).to_have_text(f"{doc['kl_divergence']:.4f}")

    # Generation: the same continuation.
    open_experiment(page, "generation")
    page.click("#inv-gen-run")
    expect(page.locator("#inv-gen-body-code")).to_be_visible()
    doc = run_cli(shown_code(page, "inv-gen-body", "cli"), capsys)
    expect(page.locator("#inv-gen-text")).to_have_text(doc["text"])
    page.locator("#stage-6").screenshot(path=str(artifacts / "reproduce-generation.png"))
    assert lmscope.load("demo") is not None
