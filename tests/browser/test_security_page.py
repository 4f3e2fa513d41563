"""The page under its real Content-Security-Policy (the other browser tests bypass it): it renders,
its callbacks and plots work, no CSP violation is reported, and another site cannot frame it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.browser

LISTEN = """document.addEventListener('securitypolicyviolation', e => {
    (window.__violations = window.__violations || []).push(
        `${e.violatedDirective} ${e.blockedURI} ${e.sample || ''}`);
});"""


@pytest.fixture
def strict_page(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A page that enforces the server's CSP, with its console errors collected."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.add_init_script(LISTEN)  # injected by the browser, not subject to the page's CSP
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page, errors
    context.close()


def test_dashboard_runs_under_its_own_csp_with_no_violation(strict_page, dashboard_url) -> None:
    page, errors = strict_page
    response = page.goto(f"{dashboard_url}/?model=demo")  # the bundled model: quick to analyze
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
    expect(page.locator("#message")).to_contain_text("is loaded", timeout=60_000)
    page.fill("#prompt", "When Mary and John went to the store, John gave a drink to")
    page.click("#analyze")
    expect(page.locator("#message")).to_contain_text("Analyzed", timeout=60_000)
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    expect(page.locator(".stage-ready")).to_have_count(5, timeout=60_000)
    page.wait_for_load_state("networkidle")
    assert page.evaluate("window.__violations || []") == []
    assert errors == []


def _framed(page: Page, parent: str, dashboard_url: str):
    """Open `parent` (a page served by the test) holding the dashboard in an iframe; its frame once
    loaded (the parent's load event waits for the frame, refused or not)."""
    html = f'<html><body><iframe id="victim" src="{dashboard_url}/"></iframe></body></html>'
    page.route(parent, lambda route: route.fulfill(body=html, content_type="text/html"))
    page.goto(parent)
    return page.frame_locator("#victim"), page.frames[1]


def test_another_site_cannot_frame_the_dashboard(strict_page, dashboard_url) -> None:
    page, _ = strict_page
    victim, frame = _framed(page, "http://attacker.example/", dashboard_url)
    assert not frame.url.startswith(dashboard_url)  # Chromium's error page instead
    expect(victim.locator("#prompt")).to_have_count(0)


def test_the_dashboard_may_frame_itself(strict_page, dashboard_url) -> None:
    page, _ = strict_page
    victim, frame = _framed(page, f"{dashboard_url}/framing-check", dashboard_url)
    assert frame.url.startswith(dashboard_url)
    expect(victim.locator("#prompt")).to_have_count(1)
