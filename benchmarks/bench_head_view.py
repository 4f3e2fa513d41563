"""Opening one head of a long prompt on SmolLM2: server time and bytes to the browser.

    python benchmarks/bench_head_view.py [--tokens 8192] [--threads 1] [--repeats 3]

Analyzes one prompt of `--tokens` tokens once, then for a few heads times what the dashboard does
when a head is opened (`attention_heatmap`: the max-pooled overview, plus the figure's JSON) and
when the user zooms into the last `ZOOM` x `ZOOM` tokens (exact weights; the dashboard's limit), and the API's compact overview
(`/api/analysis/<key>/attention?format=uint8`). Bytes are the response body as sent, compressed
with gzip (level 6, what flask-compress uses) and uncompressed. Prints a markdown table of medians.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import time

import torch

os.environ.setdefault("LMSCOPE_MAX_REQUEST_SECONDS", "3600")  # an 8,192-token analysis, on purpose

import lmscope
from lmscope.core.analysis import analyze
from lmscope.core.model_cache import ModelCache
from lmscope.dashboard.stages.attention.head import ZOOM
from lmscope.dashboard.stages.attention.plots import attention_heatmap
from lmscope.service import Service
from lmscope.web.server import api_app

WORDS = "the river keeps a slow map of every town it passes and".split()
HEADS = ((0, 0), (15, 4), (29, 8))


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = lmscope.load("smollm2-135m-instruct")
    text = "".join(" " + WORDS[i % len(WORDS)] for i in range(args.tokens))
    ids = lm.tokenizer(text)["input_ids"][: args.tokens]
    analysis, seconds = timed(lambda: analyze(lm, lm.tokenizer.decode(ids)))
    count = len(analysis.tokens)
    print(f"{lm.card.name}, {count:,} tokens: analysis {seconds:.1f} s\n")
    models = ModelCache()
    models.add(lm)
    service = Service(models)
    key = service.store.put(analysis)
    client = api_app(service).test_client()
    last = (count - ZOOM, count, count - ZOOM, count)
    views = {
        "open a head (dashboard figure, overview)": lambda l, h: attention_heatmap(
            analysis, l, h
        ).to_json(),
        f"zoom, last {ZOOM} x {ZOOM} (exact)": lambda l, h: attention_heatmap(
            analysis, l, h, window=last
        ).to_json(),
        "API overview, format=uint8": lambda l, h: client.get(
            f"/api/analysis/{key}/attention?layer={l}&head={h}&format=uint8"
        ).get_data(as_text=True),
    }
    print("| view | head | server (median ms) | JSON bytes | gzip bytes |")
    print("|---|---|---:|---:|---:|")
    for name, view in views.items():
        for layer, head in HEADS:
            times, body = [], ""
            for _ in range(args.repeats):
                body, seconds = timed(view, layer, head)
                times.append(seconds)
            raw = body.encode()
            print(
                f"| {name} | L{layer}-H{head} | {statistics.median(times) * 1000:.0f} "
                f"| {len(raw):,} | {len(gzip.compress(raw, 6)):,} |"
            )


if __name__ == "__main__":
    main()
