"""The guided tour, the guided experiments and the glossary, as a learner meets them: on the demo
model and on SmolLM2 (the model the page opens on offline)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from test_dashboard import open_demo

pytestmark = pytest.mark.browser

TOUR_TIMEOUT = 180_000  # one step may wait for an analysis or a 270-head scan on a busy machine
expect.set_options(timeout=60_000)  # the page's callbacks queue behind others on 2 busy cores


# The box's and the target's rectangles, and whether the box lies inside the viewport and apart
# from the target (sharing at most an edge).
RECTS = """index => {
  const box = document.getElementById('tour-box');
  const lit = document.querySelector(`.tour-highlight[data-tour-step="${index}"]`);
  if (!box || !lit) return null;
  const a = box.getBoundingClientRect(), b = lit.getBoundingClientRect();
  const rect = r => [r.left, r.top, r.right, r.bottom].map(Math.round);
  return {
    box: rect(a), target: rect(b), viewport: [innerWidth, innerHeight],
    apart: a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top,
    inside: a.left >= 0 && a.top >= 0 && a.right <= innerWidth && a.bottom <= innerHeight,
  };
}"""


def overlap(a: dict, b: dict) -> float:
    """The area two Playwright bounding boxes share (0 when they are apart)."""
    width = min(a["x"] + a["width"], b["x"] + b["width"]) - max(a["x"], b["x"])
    height = min(a["y"] + a["height"], b["y"] + b["height"]) - max(a["y"], b["y"])
    return max(0.0, width) * max(0.0, height)


def box_clear_of_target(page: Page, index: int) -> None:
    """The tour's box must settle inside the viewport without covering the step's target."""
    try:
        page.wait_for_function(
            f"index => {{ const r = ({RECTS})(index); return r && r.apart && r.inside; }}",
            arg=index,
            timeout=10_000,
        )
    except PlaywrightTimeout:
        rects = page.evaluate(RECTS, index)
        raise AssertionError(f"step {index}: the tour's box covers its target: {rects}") from None
    box = page.locator("#tour-box").bounding_box()
    target = page.locator(f'.tour-highlight[data-tour-step="{index}"]').bounding_box()
    assert overlap(box, target) < 1.0, (index, box, target)


def walk(page: Page, start: str, shots=None, prefix: str = "") -> dict[str, str]:
    """Run a tour from its start button to its end; at every step the highlighted element must be
    the step's target and lie in the viewport, the box must not cover it, and the counter must say
    the same number of steps. Returns each step's title and text, in order."""
    page.click(start)
    box = page.locator("#tour-box")
    expect(box).to_be_visible()
    steps, counts = {}, set()
    while True:
        expect(box).to_have_attribute("data-ready", "true", timeout=TOUR_TIMEOUT)
        index = int(box.get_attribute("data-step"))
        counter = re.fullmatch(r"Step (\d+) of (\d+)", box.locator(".tour-counter").inner_text())
        assert counter and int(counter.group(1)) == index + 1, counter
        counts.add(int(counter.group(2)))
        lit = page.locator(f'.tour-highlight[data-tour-step="{index}"]')
        expect(lit).to_have_count(1)
        expect(lit).to_be_in_viewport()
        box_clear_of_target(page, index)
        steps[box.locator(".tour-title").inner_text()] = box.locator(".tour-text").inner_text()
        if shots is not None:
            page.screenshot(path=str(shots / f"{prefix}step{index:02d}.png"))
        next_button = page.locator("#tour-next")
        if next_button.inner_text() == "Finish":
            next_button.click()
            break
        next_button.click()
        expect(box).not_to_have_attribute("data-step", str(index))
    expect(box).to_have_count(0)
    expect(page.locator(".tour-highlight")).to_have_count(0)
    assert counts == {len(steps)}, f"the tour's length changed on the way: {sorted(counts)}"
    return steps


def open_glossary_entry(page: Page, term_href: str) -> None:
    """Click a term link in a stage text; its glossary entry must open and come into view."""
    link = page.locator(f'.explain a[href="{term_href}"]').first
    link.click()
    expect(page.locator("#glossary")).to_have_attribute("open", "")
    expect(page.locator(term_href.replace("#", "#", 1))).to_be_in_viewport()


def test_the_tour_runs_to_the_end_on_the_demo_pointing_at_visible_elements(
    page, dashboard_url, artifacts
):
    open_demo(page, dashboard_url)
    expect(page.locator("#tour-start")).to_have_text("Start here: take the tour")
    steps = walk(page, "#tour-start", artifacts, "tour-demo-")
    titles = list(steps)
    assert titles[:2] == ["Start here", "1. Tokens"]
    assert {"2. Embeddings", "3. Attention", "4. MLP", "5. Output"} <= set(titles)
    assert {"Scan every head", "Ablate them", "What changed"} <= set(titles)
    # The demo is GPT-2-shaped: the tour speaks of its learned position vectors and its GELU MLP.
    assert "learned position vector" in steps["2. Embeddings"]
    assert "GELU" in steps["4. MLP"] and "grouped-query" not in steps["3. Attention"]
    expect(page.locator("#tour-remembered")).to_have_text("You finished the tour.")
    expect(page.locator("#tour-start")).to_have_text("Take the tour again")


def test_skip_ends_the_tour_and_the_page_remembers_it_after_a_reload(page, dashboard_url):
    open_demo(page, dashboard_url)
    page.click("#tour-start")
    expect(page.locator("#tour-box")).to_be_visible()
    page.click("#tour-skip")
    expect(page.locator("#tour-box")).to_have_count(0)
    expect(page.locator("#tour-remembered")).to_have_text("You skipped the tour.")
    page.reload()
    expect(page.locator("#model-card-body h2")).to_be_visible()
    expect(page.locator("#tour-remembered")).to_have_text("You skipped the tour.")
    expect(page.locator("#tour-start")).to_have_text("Take the tour again")
    expect(page.locator("#tour-box")).to_have_count(0)
    stored = page.evaluate("() => JSON.parse(localStorage.getItem('tour-memory'))")
    assert stored["ended"] == "skipped"


def test_the_induction_experiment_ablates_the_induction_heads_and_says_what_it_means(
    page, dashboard_url, artifacts
):
    open_demo(page, dashboard_url)
    steps = walk(page, "#tour-induction", artifacts, "induction-demo-")
    assert list(steps)[-1] == "What changed"
    # The heads ablated are the ones the attention stage files as induction on this prompt.
    filed = page.locator(".head-cell.cat-induction").evaluate_all(
        "cells => cells.map(c => c.dataset.head)"
    )
    ablated = page.locator("#inv-chips .chip-inline").all_inner_texts()
    assert ablated and set(ablated) <= set(filed)
    assert all(name.startswith("L1-") for name in ablated)  # the demo's induction layer
    # Without them the second copy got harder: its loss per token went up.
    match = re.search(r"loss per token went from ([\d.]+) to ([\d.]+) nats", steps["What changed"])
    assert match and float(match.group(2)) > float(match.group(1)) + 1.0


def test_the_glossary_follows_the_model_and_a_term_link_opens_its_entry(
    page, dashboard_url, artifacts
):
    page.goto(dashboard_url)  # SmolLM2
    glossary = page.locator("#glossary-body")
    expect(page.locator("#glossary-model")).to_contain_text("SmolLM2")
    page.locator("#glossary > summary").click()
    for term in (
        "RMSNorm",
        "RoPE (rotary position embedding)",
        "SwiGLU (gated MLP)",
        "grouped-query attention (GQA)",
    ):
        expect(glossary.locator("dt", has_text=term)).to_have_count(1)
    expect(glossary).to_contain_text("49,152")
    expect(glossary).not_to_contain_text("50,257")
    expect(glossary.locator("dt", has_text="LayerNorm")).to_have_count(0)
    page.locator("#glossary").screenshot(path=str(artifacts / "glossary-smollm2.png"))
    page.locator("#glossary > summary").click()  # closed again: the link must open it
    open_glossary_entry(page, "#glossary-attention-sink")
    page.screenshot(path=str(artifacts / "glossary-link-smollm2.png"))

    # The glossary is drawn while it is open, and follows a model loaded meanwhile.
    page.fill("#model-custom", "demo")
    page.click("#model-load")
    expect(page.locator("#glossary-model")).to_contain_text("demo")
    expect(page.locator("#glossary")).to_have_attribute("open", "")
    expect(glossary.locator("dt", has_text="LayerNorm")).to_have_count(1)
    expect(glossary).to_contain_text("50,257")
    expect(glossary).not_to_contain_text("RMSNorm")
    expect(glossary.locator("dt", has_text="grouped-query")).to_have_count(0)
    page.locator("#glossary").screenshot(path=str(artifacts / "glossary-demo.png"))


def test_skip_links_reach_every_stage_and_figures_have_text_alternatives(page, dashboard_url):
    open_demo(page, dashboard_url)
    nav = page.get_by_role("navigation", name="Stages")
    for name, target in (("Tokens", "#stage-1"), ("MLP", "#stage-4"), ("Investigate", "#stage-6")):
        nav.get_by_role("link", name=name).click()
        expect(page.locator(target)).to_be_in_viewport()
    slots = page.locator(".figure-slot[role=figure]")
    assert slots.count() >= 8
    labels = slots.evaluate_all("els => els.map(e => e.getAttribute('aria-label'))")
    assert all(label and len(label) > 10 for label in labels), labels
    expect(
        page.get_by_role(
            "figure", name="Bar chart of the ten most likely next tokens and their probabilities."
        )
    ).to_have_count(1)


def test_the_tour_runs_to_the_end_on_smollm2_written_for_it(page, dashboard_url, artifacts):
    page.goto(dashboard_url)
    expect(page.locator("#model-card-body h2")).to_contain_text("SmolLM2")
    steps = walk(page, "#tour-start", artifacts, "tour-smollm2-")
    assert list(steps)[-1] == "Words and experiments"
    assert "rotary positions (RoPE)" in steps["2. Embeddings"]
    assert "grouped-query attention" in steps["3. Attention"]
    assert "Attention sink: on this prompt" in steps["3. Attention"]
    assert "SwiGLU" in steps["4. MLP"]
    assert "␣Mary" in steps["5. Output"]
