"""A shared link may name any model, but a model not on this machine loads only after one click."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect
from transformers import GPT2Config

pytestmark = pytest.mark.browser

LINKED = "someone/linked-model"


@pytest.fixture(scope="module")
def config_only_in_cache() -> str:
    """A hub model whose config is cached but whose weights would have to be downloaded."""
    repo = Path(os.environ["HF_HUB_CACHE"]) / ("models--" + LINKED.replace("/", "--"))
    commit = "1" * 40
    GPT2Config(n_layer=2, n_head=4, n_embd=64).save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return LINKED


def test_a_link_to_a_model_not_on_disk_asks_before_loading(
    page, dashboard_url, dashboard_service, config_only_in_cache, artifacts
):
    loads = dashboard_service.models.loads
    page.goto(f"{dashboard_url}/?" + urlencode({"model": config_only_in_cache, "prompt": "Hi"}))
    confirm = page.locator("#confirm-load")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text(config_only_in_cache)
    expect(confirm).to_contain_text("download")
    expect(confirm).to_contain_text("parameters")
    page.locator(".controls").screenshot(path=str(artifacts / "link-asks-before-download.png"))
    assert dashboard_service.models.loads == loads  # nothing was loaded on page load
    assert config_only_in_cache not in dashboard_service.models.cached()

    page.click("#model-confirm")  # the visitor's click starts the load (offline here: it fails)
    expect(page.locator("#message .error")).to_contain_text(config_only_in_cache)
    expect(confirm).to_be_hidden()


def test_a_link_to_an_unknown_model_says_so_and_loads_nothing(page, dashboard_url):
    page.goto(f"{dashboard_url}/?" + urlencode({"model": "nobody/nothing-here"}))
    expect(page.locator("#message .error")).to_contain_text("nobody/nothing-here")
    expect(page.locator("#confirm-load")).to_be_hidden()


def test_a_confirmation_the_server_did_not_ask_for_loads_nothing(
    page, dashboard_url, dashboard_service, config_only_in_cache
):
    """The server, not the page, decides what a click on the confirm button loads: shown and
    clicked by a script of the page's own, it loads nothing."""
    page.goto(dashboard_url)
    expect(page.locator("#model-card-body h2")).to_be_visible()
    loads = dashboard_service.models.loads
    page.evaluate(  # what a crafted page state would say: "the visitor confirmed this model"
        """model => {
            try {  // the page kept such a store before; now there is none to write
                window.dash_clientside.set_props('pending-load', {data: {model, prompt: 'Hi'}});
            } catch (error) {}
            document.getElementById('confirm-load').hidden = false;
        }""",
        config_only_in_cache,
    )

    def confirm_request(response) -> bool:
        return "/_dash-update-component" in response.url and "model-confirm.n_clicks" in (
            response.request.post_data or ""
        )

    with page.expect_response(confirm_request) as answer:
        page.click("#model-confirm")
    changed = answer.value.json().get("response", {})
    assert not {"model", "analysis", "message"} & set(changed), changed  # only the box hides
    assert dashboard_service.models.loads == loads
    assert config_only_in_cache not in dashboard_service.models.cached()
