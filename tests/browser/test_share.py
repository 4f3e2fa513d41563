"""A shared link reopens the view it was copied from: the focus (head, layer, token, target) and
the generation settings travel in the URL, and exported figures are named after what they show."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Page, expect
from test_dashboard import analyze, open_demo, open_experiment, wait_for_stages

pytestmark = pytest.mark.browser
expect.set_options(timeout=30_000)  # a loaded machine: the first page load also loads SmolLM2

PROMPT = "The cat sat on the mat. The cat sat on the"
TOP10 = '{"kind":"figure","name":"top10"}'


def focus(page: Page) -> dict:
    """The page's shared `focus` store, as the browser holds it."""
    return page.evaluate("() => window.dash_component_api.getLayout('focus').props.data")


def url_keys(page: Page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def export_filename(page: Page, graph_id: str) -> str:
    return page.evaluate(
        "id => document.getElementById(id).querySelector('.js-plotly-plot')"
        "._context.toImageButtonOptions.filename",
        graph_id,
    )


def test_a_link_reopens_its_focus_and_generation_settings(page, dashboard_url, artifacts):
    link = (
        f"{dashboard_url}/?model=demo&prompt=The+cat+sat+on+the+mat.&head=1.2&layer=1&pos=3"
        "&target=+sat&gen=sample&temp=0.7&topk=5&seed=7"
    )
    page.goto(link)
    wait_for_stages(page)
    page.wait_for_function(
        "() => (window.dash_component_api.getLayout('focus').props.data || {}).position === 3"
    )
    assert focus(page) == {"head": [1, 2], "layer": 1, "position": 3, "target": " sat"}
    expect(page.locator("#output-position")).to_have_attribute("data-position", "3")
    expect(page.locator("#inv-target")).to_have_value("␣sat")
    # A link with generation settings opens the Generation tab, where they are seen.
    expect(page.locator("#inv-tab-generation")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("radio", name="sampling")).to_be_checked()
    expect(page.locator("#inv-gen-temperature [role=slider]")).to_have_attribute(
        "aria-valuenow", "0.7"
    )
    expect(page.locator("#inv-gen-top-k [role=slider]")).to_have_attribute("aria-valuenow", "5")
    expect(page.locator("#inv-gen-seed")).to_have_value("7")
    # The URL keeps every key of the link (the page writes them back as it shows them).
    page.wait_for_function("() => location.search.includes('head=1.2')")
    assert url_keys(page) == {
        "model": "demo", "prompt": "The cat sat on the mat.", "head": "1.2", "layer": "1",
        "pos": "3", "target": " sat", "gen": "sample", "temp": "0.7", "topk": "5", "seed": "7",
        "tab": "generation",
    }  # fmt: skip
    # Exported figures are named after what they show.
    assert export_filename(page, TOP10) == "lmscope-demo-pos3-top10"
    page.screenshot(path=str(artifacts / "share-link-opened.png"), full_page=True)

    # A new prompt keeps the head but not the old token position (3 is past its end); the URL
    # follows the new view.
    analyze(page, "Two plus two")
    page.wait_for_function(
        "() => new URLSearchParams(location.search).get('prompt') === 'Two plus two'"
    )
    assert focus(page).get("position") in (None, 2)
    assert url_keys(page).get("pos") in (None, "2")
    assert url_keys(page)["head"] == "1.2" and url_keys(page)["seed"] == "7"


def test_keys_that_name_nothing_are_ignored(page, dashboard_url):
    page.goto(f"{dashboard_url}/?model=demo&prompt=Two+plus+two&head=99.1&pos=abc&temp=hot&layer=7")
    wait_for_stages(page)
    expect(page.locator("#output-body .prediction")).to_be_visible()
    shown = focus(page)  # the attention views may set the last position; the link set nothing
    assert "head" not in shown and "layer" not in shown
    assert shown.get("position") in (None, 2)  # 2: the last of "Two plus two"
    expect(page.locator("#output-position")).to_have_count(0)
    expect(page.locator("#inv-tab-ablation")).to_have_attribute("aria-selected", "true")
    open_experiment(page, "generation")
    expect(page.locator("#inv-gen-temperature [role=slider]")).to_have_attribute(
        "aria-valuenow", "1"
    )


def test_a_page_opened_without_a_link_draws_its_first_analysis_once(page, dashboard_url):
    """The link's keys are taken on the first analysis; with none, nothing is drawn twice."""
    open_demo(page, dashboard_url)
    page.wait_for_load_state("networkidle")
    asked: list[dict] = []  # the callbacks a change set off (not the page's initial calls)

    def record(request) -> None:
        if "_dash-update-component" in request.url:
            body = json.loads(request.post_data or "{}")
            if body.get("changedPropIds"):
                asked.append(body)

    page.on("request", record)
    analyze(page, PROMPT)
    page.wait_for_load_state("networkidle")
    for view in ("tokens-body.children", "head-grid-body.children"):
        assert [b["changedPropIds"] for b in asked if view in b["output"]] == [["analysis.data"]]


def test_the_view_round_trips_through_its_url(page, browser, dashboard_url):
    open_demo(page, dashboard_url)
    analyze(page, PROMPT)
    # Pick a token (a generated one) and sampling settings, as a teacher would before sharing.
    open_experiment(page, "generation")
    page.fill("#inv-gen-tokens", "4")
    page.click("#inv-gen-run")
    tokens = page.locator("#inv-gen-tokens-row .gen-token")
    expect(tokens).to_have_count(4)
    before = page.evaluate("() => document.querySelector('.stage-ready').dataset.analysis")
    tokens.nth(1).click()
    wait_for_stages(page, before)
    expect(page.locator("#output-position")).to_be_visible()
    position = focus(page)["position"]
    page.get_by_role("radio", name="sampling").check()
    # The sliders are enabled by the server's answer: pressed before it, the arrow key would
    # move the focused radio group to "beam search".
    expect(page.locator("#inv-gen-top-k .dash-slider-root")).not_to_have_attribute(
        "aria-disabled", "true"
    )
    page.locator("#inv-gen-top-k [role=slider]").press("ArrowRight")
    page.wait_for_function(f"() => location.search.includes('pos={position}')"
                           " && location.search.includes('topk=1')")  # fmt: skip
    link, shown = page.url, focus(page)
    predictions = page.locator("#output-body .prediction").inner_text()

    other = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    again = other.new_page()
    again.set_default_timeout(60_000)
    again.goto(link)
    wait_for_stages(again)
    again.wait_for_function(
        f"() => (window.dash_component_api.getLayout('focus').props.data || {{}}).position"
        f" === {position}"
    )
    assert focus(again) == shown
    expect(again.locator("#output-position")).to_have_attribute("data-position", str(position))
    expect(again.locator("#output-body .prediction")).to_have_text(predictions)
    expect(again.get_by_role("radio", name="sampling")).to_be_checked()
    expect(again.locator("#inv-gen-top-k [role=slider]")).to_have_attribute("aria-valuenow", "1")
    assert url_keys(again) == url_keys(page)
    other.close()


def wait_for_export_name(page: Page, graph_id: str, name: str) -> None:
    """Until the figure `graph_id` is drawn and its download button saves it as `name`."""
    page.wait_for_function(
        "([id, name]) => { const g = document.getElementById(id);"
        " const plot = g && g.querySelector('.js-plotly-plot');"
        " return plot && plot._context.toImageButtonOptions.filename === name; }",
        arg=[graph_id, name],
    )


def test_exported_figures_carry_the_model_from_the_first_analysis_and_in_every_tab(
    page, dashboard_url
):
    open_demo(page, dashboard_url)
    analyze(page, PROMPT)
    wait_for_export_name(page, TOP10, "lmscope-demo-top10")
    # An experiment's tab mounts its figures when it opens: they are named the same way.
    open_experiment(page, "attribution")
    wait_for_export_name(
        page, '{"kind":"figure","name":"inv-dla-heads"}', "lmscope-demo-inv-dla-heads"
    )


def test_every_experiment_setting_and_the_minus_token_survive_a_shared_link(
    page, browser, dashboard_url, artifacts
):
    """A teacher sets a contrastive target, heads to ablate, a corrupted prompt and steering
    settings, then shares the URL: the link reopens each of them, and the metric is still
    logit(A) - logit(B) (before, the "minus" token was dropped and it became log p(A))."""
    open_demo(page, dashboard_url)
    analyze(page, PROMPT)
    page.fill("#inv-target", "␣mat")
    page.fill("#inv-wrong", "␣cat")
    page.fill("#inv-heads-text", "0.1,1.2")
    page.press("#inv-heads-text", "Enter")
    expect(page.locator("#inv-chips [data-head]")).to_have_count(2)
    page.get_by_role("radio", name="mean ablation").check()
    open_experiment(page, "patching")
    page.fill("#inv-patch-corrupt", "The dog sat on the mat. The dog sat on the")
    page.get_by_role("radio", name="attention output").check()
    open_experiment(page, "steering")
    page.fill("#inv-steer-a", "Joy")
    page.fill("#inv-steer-b", "Grief")
    page.fill("#inv-steer-layer", "1")
    page.fill("#inv-steer-coefficient", "2.5")
    page.wait_for_function(
        "() => ['minus', 'ablate', 'corrupt', 'sa', 'slayer', 'scoef', 'tab']"
        ".every(k => new URLSearchParams(location.search).has(k))"
    )
    keys = url_keys(page)
    assert keys["target"] == " mat" and keys["minus"] == "␣cat"  # as the boxes hold them
    assert keys["ablate"] == "0.1,1.2" and keys["mode"] == "mean"
    assert keys["pcomp"] == "attn" and keys["tab"] == "steering"
    assert (keys["sa"], keys["sb"], keys["slayer"], keys["scoef"]) == ("Joy", "Grief", "1", "2.5")

    other = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    again = other.new_page()
    again.set_default_timeout(60_000)
    again.goto(page.url)
    wait_for_stages(again)
    expect(again.locator("#inv-tab-steering")).to_have_attribute("aria-selected", "true")
    expect(again.locator("#inv-target")).to_have_value("␣mat")
    expect(again.locator("#inv-wrong")).to_have_value("␣cat")
    expect(again.locator("#inv-steer-a")).to_have_value("Joy")
    expect(again.locator("#inv-steer-b")).to_have_value("Grief")
    expect(again.locator("#inv-steer-layer")).to_have_value("1")
    expect(again.locator("#inv-steer-coefficient")).to_have_value("2.5")
    again.click("#inv-steer-run")
    expect(again.locator("#inv-steer-what")).to_contain_text("'Joy' minus that of 'Grief'")
    open_experiment(again, "ablation")
    expect(again.locator("#inv-chips [data-head]")).to_have_text(["L0-H1", "L1-H2"])
    expect(again.get_by_role("radio", name="mean ablation")).to_be_checked()
    again.click("#inv-ablate")
    expect(again.locator("#inv-ablation-body")).to_contain_text("logit(' mat') - logit(' cat')")
    open_experiment(again, "patching")
    expect(again.locator("#inv-patch-corrupt")).to_have_value(
        "The dog sat on the mat. The dog sat on the"
    )
    expect(again.get_by_role("radio", name="attention output")).to_be_checked()
    again.screenshot(path=str(artifacts / "share-experiments.png"), full_page=False)
    assert url_keys(again) == keys | {"tab": "patching"}  # the tab opened last
    other.close()
