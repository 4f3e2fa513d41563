"""Stage 3 as a learner uses it: a clicked head's pattern comes into view beside the grid, the grid
is one Tab stop walked with the arrow keys, thumbnails and the layer view open heads, the step view
shows the numbers of the stored pattern row, and a 4,096-token prompt on SmolLM2 can be zoomed."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import torch
from playwright.sync_api import Page, expect
from test_dashboard import analyze, figure, open_demo, shown_analysis, wait_for_stages

from lmscope.core.heads import LABELS
from lmscope.core.profile import head_profile

pytestmark = pytest.mark.browser

PROMPT = "The cat sat on the mat. The cat sat on the"
HEAT = '[id=\'{"kind":"figure","name":"head-heatmap"}\'] .js-plotly-plot'


def graph_id(name: str) -> str:
    return json.dumps({"kind": "figure", "name": name}, separators=(",", ":"))


def step_weights(page: Page) -> dict[int, float]:
    """The step view's table: key position -> the weight it shows."""
    rows = page.locator("#steps-table tr[data-key]")
    expect(rows.first).to_be_visible()
    return {
        int(r.get_attribute("data-key")): float(r.locator("td.weight").inner_text())
        for r in rows.all()
    }


def check_steps(page: Page, analysis, layer: int, head: int, position: int) -> None:
    """The step view names the head and query token, and its weights are the pattern row's."""
    title = page.locator("#head-steps .steps-title")
    expect(title).to_contain_text(f"L{layer}-H{head}, query token {position}")
    # Every step is written out whole, text before its numbers included.
    steps = page.locator("#head-steps ol li").all_inner_texts()
    assert [s.split(",")[0].split(":")[0] for s in steps] == [f"Step {n}" for n in range(1, 7)]
    row = analysis.pattern(layer, head)[position]
    shown = step_weights(page)
    assert list(shown) == row.topk(len(shown)).indices.tolist()
    for key, weight in shown.items():
        assert weight == pytest.approx(float(row[key]), abs=1e-6)


def test_attention_views_follow_the_learner_on_the_demo(
    page, dashboard_url, dashboard_service, artifacts
):
    open_demo(page, dashboard_url)
    key = analyze(page, PROMPT)
    analysis = dashboard_service.store.get(key)
    last = len(analysis.tokens) - 1
    profile = head_profile(analysis.lm)  # the model's general head roles, from the library

    # The categories table lists, beside this input's heads, the heads of each general role.
    header = page.locator("#head-categories table.categories th").last
    expect(header).to_have_text("heads with this general role (profile)")
    for category, heads in profile.summary().items():
        row = (
            page.locator("#head-categories table.categories tbody tr")
            .filter(has_text=LABELS[category])
            .first
        )
        expect(row.locator("td").last).to_have_text(", ".join(heads) or "none")

    # The grid is one Tab stop: a single cell is tabbable, and the arrow keys move within it.
    cells = page.locator("#head-grid-body .head-cell")
    expect(cells).to_have_count(8)
    expect(page.locator('#head-grid-body .head-cell[tabindex="0"]')).to_have_count(1)
    page.locator('[data-head="L0-H0"]').focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator('[data-head="L0-H1"]')).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.locator('[data-head="L1-H1"]')).to_be_focused()
    page.keyboard.press("End")
    expect(page.locator('[data-head="L1-H3"]')).to_be_focused()
    page.keyboard.press("ArrowLeft")
    expect(page.locator('[data-head="L1-H2"]')).to_be_focused()
    expect(page.locator('#head-grid-body .head-cell[tabindex="0"]')).to_have_attribute(
        "data-head", "L1-H2"
    )
    page.keyboard.press("Tab")  # one Tab leaves the grid
    assert page.evaluate("document.activeElement.classList.contains('head-cell')") is False
    page.keyboard.press("Shift+Tab")
    expect(page.locator('[data-head="L1-H2"]')).to_be_focused()

    # Enter opens the focused head; its pattern is on screen, beside the grid.
    page.keyboard.press("Enter")
    expect(page.locator("#head-detail")).to_contain_text("L1-H2")
    role = LABELS[profile.categories[1][2]]
    expect(page.locator("#head-detail")).to_contain_text(f"General role (profile): {role}.")
    expect(page.locator(HEAT)).to_be_in_viewport()
    z = torch.tensor(figure(page, "head-heatmap")["z"])
    assert torch.allclose(z, analysis.pattern(1, 2), atol=1e-6)
    check_steps(page, analysis, 1, 2, last)
    expect(page.locator("#values-table tbody tr").first).to_contain_text("0.")
    page.locator("#stage-3").screenshot(path=str(artifacts / "attention-demo-stage3.png"))

    # Scrolled away, a click on another head brings its pattern back into view.
    page.mouse.wheel(0, -3000)
    page.locator('[data-head="L0-H3"]').scroll_into_view_if_needed()
    page.locator('[data-head="L0-H3"]').click()
    expect(page.locator("#head-detail")).to_contain_text("L0-H3")
    expect(page.locator(HEAT)).to_be_in_viewport()
    page.screenshot(path=str(artifacts / "attention-demo-viewport.png"))

    # The token view: clicking a chip follows that query token in the step view.
    chip = page.locator('#attn-token-chips [data-token-index="6"]')
    chip.click()
    check_steps(page, analysis, 0, 3, 6)
    expect(page.locator("#attn-token-chips .chip")).to_have_count(7)  # tokens 0..6 can be read
    # A position typed into the step view's box is followed the same way (and by the page).
    page.fill("#attn-query", "4")
    page.press("#attn-query", "Enter")
    check_steps(page, analysis, 0, 3, 4)
    page.wait_for_function(
        "() => window.dash_component_api.getLayout('focus').props.data.position === 4"
    )
    page.get_by_label("every head of its layer").check()
    expect(page.locator("#attn-tokens .hint")).to_contain_text("strongest of 4 heads")
    page.locator("#head-steps-view").screenshot(path=str(artifacts / "attention-demo-steps.png"))
    page.locator("#attn-token-view").screenshot(path=str(artifacts / "attention-demo-tokens.png"))

    # The model view: a thumbnail per head; clicking one opens that head.
    page.locator("#model-view-box > summary").click()
    thumbs = page.locator("#model-view .thumb")
    expect(thumbs).to_have_count(8)
    page.locator('#model-view .thumb[data-thumb="L1-H0"]').click()
    expect(page.locator("#head-detail")).to_contain_text("L1-H0")
    expect(page.locator(HEAT)).to_be_in_viewport()
    expect(page.locator("#layer-select")).to_contain_text("Layer 1")
    page.locator("#model-view-box").screenshot(path=str(artifacts / "attention-demo-model.png"))

    # The layer view (drawn when opened) names tokens and opens the head clicked.
    page.locator("#layer-view > summary").click()
    layer = page.locator(f"[id='{graph_id('layer-heads')}']")
    layer.scroll_into_view_if_needed()
    expect(layer.locator(".ytick text").first).to_contain_text("0·The")
    layer.screenshot(path=str(artifacts / "attention-demo-layer.png"))


def test_a_4096_token_prompt_on_smollm2_opens_and_zooms(
    page, dashboard_url, dashboard_service, artifacts, monkeypatch
):
    # 4,096 tokens estimate above the default 90 s per request: the operator's limit is raised
    monkeypatch.setenv("LMSCOPE_MAX_REQUEST_SECONDS", "1200")
    words = "the river keeps a slow map of every town it passes and".split()
    prompt = " ".join(words[i % len(words)] for i in range(4096))
    page.goto(dashboard_url)  # offline with no GPT-2: the page opens on SmolLM2
    expect(page.locator("#model-card-body h2")).to_contain_text("SmolLM2 135M Instruct")
    page.fill("#prompt", prompt)
    page.click("#analyze")
    page.set_default_timeout(420_000)  # ~170 s on 2 busy cores
    wait_for_stages(page)
    key = shown_analysis(page)
    expect(page.locator("#stage-1 .token-count")).to_contain_text("4,096 tokens")

    page.locator('[data-head="L3-H4"]').click()
    expect(page.locator("#head-detail")).to_contain_text("L3-H4")
    heat = page.locator(HEAT)
    expect(heat).to_be_in_viewport()
    expect(page.locator("#head-zoom-note")).to_contain_text("Drag a box")
    whole = figure(page, "head-heatmap")
    assert len(whole["z"]) == 512 and whole["y"][1] == 8  # 8 x 8 token tiles
    page.locator("#stage-3").screenshot(path=str(artifacts / "attention-4k-overview.png"))

    # Zoom (as a box drag reports it): the window is redrawn at full resolution, tokens named.
    page.evaluate(
        "id => Plotly.relayout(document.getElementById(id).querySelector('.js-plotly-plot'),"
        " {'xaxis.range[0]': 3969.5, 'xaxis.range[1]': 4031.5,"
        " 'yaxis.range[0]': 4031.5, 'yaxis.range[1]': 3999.5})",
        graph_id("head-heatmap"),
    )
    expect(heat.locator(".gtitle")).to_contain_text(
        "queries 4000-4031, keys 3970-4031, every token"
    )
    zoomed = figure(page, "head-heatmap")
    assert zoomed["y"][0] == 4000 and len(zoomed["y"]) == 32 and len(zoomed["x"]) == 62
    page.locator("#head-view").screenshot(path=str(artifacts / "attention-4k-zoomed.png"))

    # The step view stays small: the top keys and one row for the thousands of others.
    expect(page.locator("#steps-table tr.rest")).to_contain_text("other 4,0")
    check_steps(page, dashboard_service.store.get(key), 3, 4, 4095)
    assert len(step_weights(page)) == 8
    page.locator("#head-steps-view").screenshot(path=str(artifacts / "attention-4k-steps.png"))


def test_a_shared_link_opens_its_head_and_query_token(page, dashboard_url):
    prompt = "The cat sat on the mat"
    page.goto(f"{dashboard_url}/?model=demo&prompt={quote(prompt)}&head=1.3&pos=2")
    wait_for_stages(page)
    expect(page.locator("#head-detail")).to_contain_text("L1-H3")
    expect(page.locator(HEAT)).to_be_visible()
    expect(page.locator("#head-steps .steps-title")).to_contain_text("L1-H3, query token 2")


def test_a_focus_written_while_the_analysis_is_drawn_does_not_leave_the_grid_behind(
    page, dashboard_url
):
    """The page drops the answer of a request superseded by a newer call of the same callback:
    a focus written while the attention stage's request for a new analysis is in flight (a
    shared link's focus does this on the first analysis) must still draw the new analysis."""
    open_demo(page, dashboard_url)
    previous = analyze(page, PROMPT)
    held = []

    def hold_the_first_grid_request(route) -> None:
        if not held and "head-grid-body" in (route.request.post_data or ""):
            held.append(route)
        else:
            route.continue_()

    page.route("**/_dash-update-component*", hold_the_first_grid_request)
    grid_request = lambda r: "head-grid-body" in (r.post_data or "")  # noqa: E731
    page.fill("#prompt", "Two plus two is four. Two plus two is")
    with page.expect_request(grid_request):
        page.click("#analyze")
    with page.expect_request(grid_request):  # the focus calls the stage again
        page.evaluate(
            "() => window.dash_clientside.set_props('focus', {data: {layer: 1, head: [1, 0]}})"
        )
    held[0].continue_()
    new = wait_for_stages(page, previous)
    assert new != previous
    expect(page.locator("#head-grid-body .stage-ready")).to_have_attribute("data-analysis", new)
