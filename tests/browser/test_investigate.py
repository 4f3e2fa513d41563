"""The Investigation panel as a person uses it, and a newer Analyze winning over an older one.

Every expected value comes from the library called directly here (`lmscope.analyze`,
`experiments.ablation`, `experiments.generation`), compared with what the page shows.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from playwright.sync_api import Page, expect
from test_dashboard import (
    analyze,
    chips,
    expected_chips,
    long_prompt,
    open_demo,
    open_experiment,
    wait_for_stages,
)

import lmscope
from lmscope.core.tokens import display
from lmscope.dashboard.figures import percent
from lmscope.dashboard.stages.investigate import ablation as ablation_panel
from lmscope.dashboard.stages.investigate import generation as generation_panel
from lmscope.experiments.ablation import ablate, ablation_scan
from lmscope.experiments.attribution import direct_logit_attribution, token_attribution
from lmscope.experiments.generation import GenerationSettings, generate

pytestmark = pytest.mark.browser

PROMPT = "The cat sat on the mat. The cat sat on the"
HEADS = [(0, 1), (1, 2)]


def graph_id(name: str) -> str:
    return json.dumps({"kind": "figure", "name": name}, separators=(",", ":"))


def _array(value):
    """A plotly array as the browser holds it: a list, or a binary {dtype, bdata, shape}."""
    if isinstance(value, dict) and "bdata" in value:
        values = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        if "shape" in value:
            values = values.reshape([int(n) for n in str(value["shape"]).split(",")])
        return values.tolist()
    return value


def traces(page: Page, name: str) -> list[dict]:
    """Every trace of a plotly figure on the page (x, y, z, customdata, name)."""
    data = page.evaluate(
        "id => [...document.getElementById(id).querySelector('.js-plotly-plot').data]"
        ".map(d => ({name: d.name, x: d.x, y: d.y, z: d.z, customdata: d.customdata}))",
        graph_id(name),
    )
    return [{k: _array(v) for k, v in trace.items()} for trace in data]


def wait_for_figure(page: Page, name: str) -> None:
    expect(page.locator(f"[id='{graph_id(name)}'] .js-plotly-plot")).to_be_visible()


@pytest.fixture
def demo(dashboard_service):
    return dashboard_service.model("demo")


def test_ablation_of_heads_clicked_in_the_grid(page, dashboard_url, demo, artifacts):
    open_demo(page, dashboard_url)
    analyze(page, PROMPT)

    # Select two heads by clicking grid cells in "select" mode; the head heatmap stays closed.
    page.get_by_label("adds it to / removes it from the ablation set").check()
    for layer, head in HEADS:
        page.locator(f'.head-cell[data-head="L{layer}-H{head}"]').click()
    names = [f"L{layer}-H{head}" for layer, head in HEADS]
    expect(page.locator("#inv-chips .chip-inline")).to_have_text(names)
    expect(page.locator(".head-cell.selected")).to_have_count(2)
    expect(page.locator(f"[id='{graph_id('head-heatmap')}']")).to_be_hidden()
    page.locator("#stage-3").screenshot(path=str(artifacts / "investigate-grid-selection.png"))
    # Clicking again removes a head; a third click puts it back.
    page.locator('.head-cell[data-head="L1-H2"]').click()
    expect(page.locator("#inv-chips .chip-inline")).to_have_text(names[:1])
    page.locator('.head-cell[data-head="L1-H2"]').click()
    expect(page.locator("#inv-chips .chip-inline")).to_have_text(names)

    # Zero ablation: before = the plain analysis, after = `ablate` called here.
    page.click("#inv-ablate")
    wait_for_figure(page, "inv-ablation")
    clean = lmscope.analyze(demo, PROMPT).top_predictions(1)[0]
    result = ablate(demo, PROMPT, HEADS, "zero", new_tokens=ablation_panel.ABLATION_TOKENS)
    before, after = traces(page, "inv-ablation")
    assert (before["name"], after["name"]) == ("before", "after")
    assert before["customdata"][0] == clean.id
    assert before["y"][0] == pytest.approx(clean.probability, abs=1e-5)
    expect(page.locator("#inv-top-before")).to_have_text(display(clean.text))
    probs = result.after.softmax(-1)
    for token, shown in zip(before["customdata"], after["y"], strict=True):
        assert shown == pytest.approx(float(probs[token]), abs=1e-5)
    best = result.top("after", 1)[0]
    expect(page.locator("#inv-top-after")).to_have_text(display(best.text))
    assert best.id in before["customdata"] + after["customdata"]
    expect(page.locator("#inv-kl")).to_have_text(f"{result.kl:.4f}")
    expect(page.locator("#inv-continuation-before")).to_have_text(result.generation_before.text)
    expect(page.locator("#inv-continuation-after")).to_have_text(result.generation_after.text)

    # The scan: one cell per head, each equal to `ablation_scan`; a click adds its head.
    page.click("#inv-scan-run")
    wait_for_figure(page, "inv-scan")
    (heat,) = traces(page, "inv-scan")
    scan = ablation_scan(demo, PROMPT, "zero")
    z = torch.tensor(heat["z"], dtype=torch.float64)
    assert z.shape == (demo.layers, demo.heads)
    assert torch.allclose(z, scan.effect.double(), atol=1e-4)
    page.locator(f"[id='{graph_id('inv-scan')}']").screenshot(
        path=str(artifacts / "investigate-scan.png")
    )
    # Clicking the scan's cell of L1-H3 adds that head to the selection.
    page.click("#inv-heads-clear")
    expect(page.locator("#inv-chips .chip-inline")).to_have_count(0)
    cells = page.locator(f"[id='{graph_id('inv-scan')}'] .nsewdrag").first
    cells.scroll_into_view_if_needed()
    box = cells.bounding_box()
    x, y = box["x"] + box["width"] * 3.5 / 4, box["y"] + box["height"] * 1.5 / 2
    page.mouse.move(x, y)  # plotly clicks the point under the hover
    page.mouse.click(x, y)
    expect(page.locator("#inv-chips .chip-inline")).to_have_text(["L1-H3"])

    # Greedy generation equals `generate` called here.
    open_experiment(page, "generation")
    page.fill("#inv-gen-tokens", "12")
    page.click("#inv-gen-run")
    greedy = generate(demo, PROMPT, GenerationSettings(max_new_tokens=12))
    expect(page.locator("#inv-gen-text")).to_have_text(greedy.text)
    expect(page.locator("#inv-gen-steps tbody tr")).to_have_count(len(greedy.steps))

    # The other experiments draw, and the panel's results download as JSON.
    open_experiment(page, "attribution")
    page.click("#inv-dla-run")
    wait_for_figure(page, "inv-dla-heads")
    dla = direct_logit_attribution(lmscope.analyze(demo, PROMPT))
    shown = torch.tensor(traces(page, "inv-dla-heads")[0]["z"], dtype=torch.float64)
    assert torch.allclose(shown, dla.heads.double(), atol=1e-4)
    assert traces(page, "inv-dla-mlp")[0]["y"] == pytest.approx(dla.mlps.tolist(), abs=1e-4)
    page.click("#inv-attr-run")
    attribution = token_attribution(demo, PROMPT)
    gap = attribution.f_input - attribution.f_baseline
    expect(page.locator("#inv-completeness")).to_contain_text(
        f"add up to {float(attribution.integrated_gradients.sum()):.4f}"
    )
    expect(page.locator("#inv-completeness")).to_contain_text(f"= {gap:.4f}")
    ig = page.locator("#inv-attr-ig .chip")
    expect(ig).to_have_count(len(result.tokens))
    last = float(attribution.integrated_gradients[-1])
    expect(ig.last).to_have_attribute("title", re.compile(re.escape(f"{last:+.4f}")))
    with page.expect_download() as info:
        page.click("#inv-download-json")
    document = json.loads(Path(info.value.path()).read_text())
    assert document["prompt"] == PROMPT
    assert document["ablation"]["head_names"] == names
    assert document["ablation_scan"]["effect"] == scan.to_dict()["effect"]
    assert document["generation"]["text"] == greedy.text
    page.locator("#stage-6").screenshot(path=str(artifacts / "investigate-panel.png"))


def test_compare_with_a_second_model(page, dashboard_url, dashboard_service, tiny_gpt2, artifacts):
    key = dashboard_service.models.add(tiny_gpt2)
    open_demo(page, dashboard_url)
    analyze(page, PROMPT)
    open_experiment(page, "comparison")
    page.fill("#inv-compare-custom", "no-such-org/no-such-model")
    page.click("#inv-compare-run")
    expect(page.locator("#inv-message .error")).to_contain_text("no-such-org/no-such-model")
    page.fill("#inv-compare-custom", key)
    page.click("#inv-compare-run")
    wait_for_figure(page, "inv-compare")
    expect(page.locator("#inv-message .error")).to_have_count(0)
    tables = page.locator("#inv-compare-predictions table")
    expect(tables).to_have_count(2)
    demo = dashboard_service.model("demo")
    for table, lm in zip(tables.all(), (demo, tiny_gpt2), strict=True):
        best = lmscope.analyze(lm, PROMPT).top_predictions(1)[0]
        expect(table.locator("tbody tr").first.locator("td").nth(1)).to_have_text(
            display(best.text)
        )
    page.locator("#stage-6").screenshot(path=str(artifacts / "investigate-compare.png"))


def test_bad_head_shows_a_message_and_the_panel_keeps_working(page, dashboard_url, demo, artifacts):
    open_demo(page, dashboard_url)
    analyze(page, PROMPT)
    page.fill("#inv-heads-text", "0.1,7.0")
    page.click("#inv-heads-add")
    error = page.locator("#inv-message .error")
    expect(error).to_contain_text("Layer 7 does not exist")
    expect(page.locator("#inv-chips .chip-inline")).to_have_count(0)
    page.locator("#stage-6").screenshot(path=str(artifacts / "investigate-error.png"))

    page.fill("#inv-heads-text", "0.1")
    page.press("#inv-heads-text", "Enter")
    expect(page.locator("#inv-chips .chip-inline")).to_have_text(["L0-H1"])
    expect(error).to_have_count(0)
    page.get_by_label("mean ablation").check()
    page.fill("#inv-target", "␣mat")  # a picked target token, by its text
    page.click("#inv-ablate")
    wait_for_figure(page, "inv-ablation")
    result = ablate(
        demo, PROMPT, [(0, 1)], "mean", target=" mat", new_tokens=ablation_panel.ABLATION_TOKENS
    )
    expect(page.locator("#inv-kl")).to_have_text(f"{result.kl:.4f}")
    expect(page.locator("#inv-target-change")).to_contain_text(f"(id {result.target})")
    p_before, p_after = result.target_probability
    expect(page.locator("#inv-target-change")).to_contain_text(
        f"{percent(p_before)} → {percent(p_after)}"
    )

    # Bad generation settings are refused with a message.
    open_experiment(page, "generation")
    page.get_by_label("sampling", exact=True).check()
    page.fill("#inv-gen-seed", "-1")
    page.click("#inv-gen-run")
    expect(error).to_contain_text("'seed' must be between 0 and 2**63 - 1")

    # A target that is not one token is refused with a message; the panel stays usable.
    open_experiment(page, "ablation")
    page.fill("#inv-target", "no such single token")
    page.click("#inv-scan-run")
    expect(error).to_contain_text("pick a single token")
    page.fill("#inv-target", "")
    page.click("#inv-scan-run")
    wait_for_figure(page, "inv-scan")
    expect(error).to_have_count(0)


def test_newer_analyze_from_the_same_tab_wins(
    page, dashboard_url, dashboard_service, small_gpt2, gpt2_tokenizer, monkeypatch
):
    """A slow analysis (1,000 tokens, GPT-2 Small's shape) overtaken by a quick one."""
    key = dashboard_service.models.add(small_gpt2)
    started: list[str] = []
    finished: list[str] = []
    plain = dashboard_service.analyze

    def analyze_and_record(model, prompt, *args, **kwargs):
        started.append(prompt)
        try:  # A is cancelled by B (tests/browser/test_cancel.py), or may end first
            return plain(model, prompt, *args, **kwargs)
        finally:
            finished.append(prompt)

    monkeypatch.setattr(dashboard_service, "analyze", analyze_and_record)
    slow = long_prompt(gpt2_tokenizer, 1000)
    quick = "A short prompt wins"
    open_demo(page, dashboard_url)
    page.fill("#model-custom", key)
    page.click("#model-load")
    expect(page.locator("#model-card-body h2")).to_contain_text("GPT-2")
    page.fill("#prompt", slow)
    page.click("#analyze")
    for _ in range(300):  # until the server is analyzing A
        if started:
            break
        page.wait_for_timeout(100)
    assert started == [slow] and not finished, "A was meant to still run when B was asked for"
    page.fill("#prompt", quick)
    page.click("#analyze", timeout=2_000)  # at once: the button stays usable while A runs
    wait_for_stages(page)
    for _ in range(600):  # until the server has finished A too (and answered it)
        if slow in finished:
            break
        page.wait_for_timeout(200)
    assert sorted(finished) == sorted([quick, slow])  # passes take turns: either may end first
    expect(page.locator("#status")).to_have_text("")  # A's answer reached the page, and lost
    assert chips(page) == expected_chips(gpt2_tokenizer, quick)
    expect(page.locator("#output-body")).to_contain_text("Most likely next token")
    assert "prompt=A+short+prompt+wins" in page.url
    expect(page.locator("#prompt")).to_have_value(quick)


def test_a_result_for_a_replaced_analysis_is_not_shown(page, dashboard_url, monkeypatch):
    """Generate, then Analyze another prompt before the generation returns: the panel belongs to
    the new prompt, so the late continuation of the old one never appears."""
    release, entered = threading.Event(), threading.Event()
    plain = generation_panel.generate

    def slow_generate(*args, **kwargs):
        entered.set()
        release.wait(timeout=60)
        return plain(*args, **kwargs)

    monkeypatch.setattr(generation_panel, "generate", slow_generate)
    open_demo(page, dashboard_url)
    analyze(page, PROMPT)
    open_experiment(page, "generation")
    page.click("#inv-gen-run")
    assert entered.wait(timeout=30)
    analyze(page, "A different prompt")
    release.set()
    expect(page.locator("#inv-gen-run")).to_be_enabled()  # the old request has returned
    page.wait_for_timeout(1_000)
    expect(page.locator("#inv-gen-text")).to_have_count(0)
    monkeypatch.setattr(generation_panel, "generate", plain)
    page.click("#inv-gen-run")
    expect(page.locator("#inv-gen-text")).to_be_visible()


def test_the_experiments_are_tabs_a_keyboard_can_switch(page, dashboard_url, artifacts):
    """One experiment's controls on the page at a time; the tabs are one Tab stop, the arrow
    keys move between them and Enter opens one, whose settings were kept meanwhile."""
    open_demo(page, dashboard_url)
    analyze(page, PROMPT)
    tabs = page.get_by_role("tablist").get_by_role("tab")
    expect(tabs).to_have_text(
        ["Ablation", "Attribution", "Patching", "Steering", "Generation", "Comparison"]
    )
    expect(page.locator("#inv-ablate")).to_be_visible()
    expect(page.locator("#inv-gen-run")).to_have_count(0)  # not mounted: not drawn on Analyze
    ablation = page.locator("#inv-tab-ablation")
    expect(ablation).to_have_attribute("tabindex", "0")
    expect(page.locator("#inv-tab-generation")).to_have_attribute("tabindex", "-1")
    ablation.focus()
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    expect(page.locator("#inv-tab-generation")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#inv-tab-generation")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#inv-ablate")).to_have_count(0)
    page.fill("#inv-gen-tokens", "7")
    page.keyboard.press("Home")  # in the box: its own key, not the tabs'
    open_experiment(page, "ablation")
    open_experiment(page, "generation")
    expect(page.locator("#inv-gen-tokens")).to_have_value("7")
    page.locator("#stage-6").screenshot(path=str(artifacts / "investigate-tabs.png"))


def test_download_before_any_result_says_there_is_nothing_yet(page, dashboard_url):
    open_demo(page, dashboard_url)
    analyze(page, PROMPT)
    downloads = []
    page.on("download", lambda download: downloads.append(download))
    page.click("#inv-download-json")
    expect(page.locator("#inv-message")).to_contain_text("Nothing to download yet")
    assert downloads == []
