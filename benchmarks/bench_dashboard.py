"""Dashboard latency and payload: time from pressing Analyze until all five stages are drawn.

Models: the bundled demo, and GPT-2 Small's shape (random weights saved to a local folder and
loaded as an operator's `--model PATH`). Prompts of 32 and 1,024 tokens. Also the bytes on the
wire (response bodies as sent, compressed) of the first page load and of the 1,024-token analysis
before any head is opened. `--busy` runs it all beside one busy process.

    python benchmarks/bench_dashboard.py [--repeats 3] [--busy]

Prints a markdown table of medians. Needs Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as lmscope sets it for `lmscope serve`:
# OpenMP reads it when torch loads, and torch loads here before lmscope does

import torch
from playwright.sync_api import Error, Page, sync_playwright
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast
from werkzeug.serving import WSGIRequestHandler, make_server

from lmscope.core.catalog import DEMO_ID, DEMO_PATH
from lmscope.core.loading import load_model
from lmscope.core.model_cache import ModelCache
from lmscope.service import Service
from lmscope.web.server import dashboard_app

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
TEXT = (
    "The committee met on Tuesday to discuss the budget for the new library, and after a long "
    "debate about parking, lighting and the children's reading room, it approved the plan. "
)
READY = (
    "old => { const ids = [...document.querySelectorAll('.stage-ready')]"
    ".map(e => e.dataset.analysis); return ids.length === 5 && new Set(ids).size === 1"
    " && ids[0] !== old; }"
)
CURRENT = (
    "() => { const e = document.querySelector('.stage-ready'); return e && e.dataset.analysis; }"
)


class Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass


def body_size(response) -> int:
    """Bytes of a response body as it crossed the wire (compressed where the server compressed
    it; 0 when the page closed before it could be read)."""
    try:
        return response.request.sizes()["responseBodySize"]
    except Error:
        return 0


def prompt_of(tokenizer: GPT2TokenizerFast, tokens: int) -> str:
    ids = tokenizer(TEXT * (tokens // 20 + 1))["input_ids"][:tokens]
    return tokenizer.decode(ids)


def gpt2_small_folder(tokenizer: GPT2TokenizerFast) -> str:
    """GPT-2 Small's shape with seeded random weights, saved in a folder removed at exit."""
    folder = tempfile.mkdtemp(prefix="lmscope-bench-gpt2-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


sizes_listener: list = []  # the response listener counting the measured analysis's bytes


def time_analysis(page: Page, prompt: str, sizes: list[int] | None = None) -> float:
    """Seconds from pressing Analyze until every stage is drawn for the new analysis."""
    old = page.evaluate(CURRENT)
    page.fill("#prompt", prompt)
    if sizes is not None:
        sizes_listener[:] = [lambda response: sizes.append(body_size(response))]
        page.on("response", sizes_listener[0])
    start = time.perf_counter()
    page.click("#analyze")
    page.wait_for_function(READY, arg=old, timeout=600_000)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--busy", action="store_true", help="beside one busy process (a user's other work)"
    )
    args = parser.parse_args()
    busy = None
    if args.busy:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    tokenizer = GPT2TokenizerFast.from_pretrained(DEMO_PATH)
    service = Service(ModelCache())
    small = service.models.add(load_model(gpt2_small_folder(tokenizer), allow_local_path=True))
    app = dashboard_app(service, DEMO_ID)
    server = make_server("127.0.0.1", 0, app.server, threaded=True, request_handler=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    rows = []
    payload = page_load = None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for model, name in ((DEMO_ID, "demo (2 layers)"), (small, "GPT-2 Small shape")):
            for tokens in (32, 1024):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                loaded: list[int] = []
                page.on("response", lambda response, sink=loaded: sink.append(body_size(response)))
                page.goto(url)
                page.wait_for_selector("#model-card-body")
                page.wait_for_load_state("networkidle")  # plotly.js comes with the first figure
                page_load = page_load or sum(loaded)
                page.fill("#model-custom", model)
                page.click("#model-load")
                page.wait_for_selector("#message .ok")
                prompt = prompt_of(tokenizer, tokens)
                count = min(
                    len(tokenizer(prompt)["input_ids"]),
                    service.models.get(model).card.context_length,
                )
                times = []
                for repeat in range(args.repeats + 1):  # the first run warms caches: not counted
                    measure = model == small and tokens == 1024 and repeat == 0
                    sizes: list[int] | None = [] if measure else None
                    seconds = time_analysis(page, prompt, sizes)
                    if repeat:
                        times.append(seconds)
                    else:  # the model's head profile, measured once per model in its own request
                        page.wait_for_selector("#head-categories table", timeout=120_000)
                    if measure:  # let the last responses land before counting them
                        page.wait_for_load_state("networkidle")
                        page.wait_for_timeout(1000)
                        payload = sum(sizes)
                        page.remove_listener("response", sizes_listener[0])
                rows.append((name, count, statistics.median(times), len(times)))
                context.close()
        browser.close()
    server.shutdown()
    if busy is not None:
        busy.kill()
    print("| model | tokens analyzed | Analyze → all stages drawn (median s) | runs |")
    print("|---|---|---|---|")
    for name, count, median, runs in rows:
        print(f"| {name} | {count:,} | {median:.2f} | {runs} |")
    print()
    print(
        f"Bytes on the wire for the 1,024-token GPT-2 Small analysis (before opening a head): "
        f"{payload:,}"
    )
    print(
        f"Bytes on the wire of the first page load (Dash, React and plotly.js bundles, layout): "
        f"{page_load:,}"
    )


if __name__ == "__main__":
    main()
