"""Browser fixtures: the dashboard served from a thread of this process, and headless Chromium."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import huggingface_hub.constants
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from werkzeug.serving import WSGIRequestHandler, make_server

from lmscope.core.model_cache import ModelCache
from lmscope.service import Service
from lmscope.web.server import dashboard_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


class QuietHandler(WSGIRequestHandler):
    """No line per request in the test log."""

    def log_request(self, *args, **kwargs) -> None:
        pass


@pytest.fixture(scope="session")
def dashboard_service() -> Service:
    """The server-side state behind the test dashboard (tests may add models to it)."""
    return Service(ModelCache())


@pytest.fixture(scope="session")
def dashboard_url(dashboard_service, tmp_path_factory) -> Iterator[str]:
    """The dashboard on 127.0.0.1 (a free port), started with no cached GPT-2, as offline."""
    empty_cache = tmp_path_factory.mktemp("empty-hf-cache")
    with pytest.MonkeyPatch.context() as patch:  # GPT-2 cannot be had: the app opens on the demo
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(empty_cache))
        app = dashboard_app(dashboard_service)
    server = make_server("127.0.0.1", 0, app.server, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # Playwright evaluates `wait_for_function` predicates as strings, which the page's CSP forbids
    # (no 'unsafe-eval'); tests/browser/test_security_page.py checks the page under its real CSP.
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, accept_downloads=True, bypass_csp=True
    )
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()
