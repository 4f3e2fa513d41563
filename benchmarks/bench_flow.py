"""The pass on one screen and the line view on SmolLM2, short and long prompts: server time and bytes.

    python benchmarks/bench_flow.py [--tokens 32 1024 8192] [--threads 1] [--repeats 5]

For each prompt length, analyzes once, then times what the page asks of the server: the flow view
drawn at the last token (at every Analyze) and at a middle one (a followed token: its logit lens is
read on request), the line view's frame, and one hover (every head's row of a layer). Bytes are
the JSON the browser gets, uncompressed and gzipped (level 6, as flask-compress sends it). Prints a
markdown table of medians; peak memory is the analysis's own (the views add tensors of d or T).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import time

import torch

os.environ.setdefault("LMSCOPE_MAX_REQUEST_SECONDS", "3600")  # an 8,192-token analysis, on purpose

import lmscope
from lmscope.core.analysis import analyze
from lmscope.core.flow import head_lines, line_window
from lmscope.dashboard.stages import Drawing, flow
from lmscope.dashboard.stages.attention import lines

WORDS = "the river keeps a slow map of every town it passes and".split()


def median_time(fn, repeats: int) -> tuple[object, float]:
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return value, statistics.median(times)


def sizes(text: str) -> str:
    raw = text.encode()
    return f"{len(raw):,} / {len(gzip.compress(raw, 6)):,}"


def row(lm, tokens: int, repeats: int) -> str:
    """One table row: analyze a prompt of `tokens` tokens, then time the views' requests."""
    text = "".join(" " + WORDS[i % len(WORDS)] for i in range(tokens))
    ids = lm.tokenizer(text)["input_ids"][:tokens]
    start = time.perf_counter()
    analysis = analyze(lm, lm.tokenizer.decode(ids))
    analyzed = time.perf_counter() - start
    count = len(analysis.tokens)
    data = {"id": "bench"}
    last = Drawing(analysis, data, None, True, "analysis", {})
    middle = Drawing(analysis, data, {"position": count // 2}, False, "focus", {})
    body, last_s = median_time(lambda: flow.draw(last), repeats)
    _, middle_s = median_time(lambda: flow.draw(middle), repeats)
    _, frame_s = median_time(lambda: lines.frame(last), repeats)
    shown = line_window(count, count - 1)
    heads = list(range(analysis.heads_per_layer))
    hover, hover_s = median_time(lambda: head_lines(analysis, 15, count - 1, heads, shown), repeats)
    answer = json.dumps({"lines": [line.to_dict() for line in hover]}, separators=(",", ":"))
    doc = body[0].to_plotly_json()["props"]["data-flow"]
    return (
        f"| {count:,} | {analyzed:.2f} s | {1000 * last_s:.1f} ms | {1000 * middle_s:.1f} ms "
        f"| {1000 * frame_s:.2f} ms | {1000 * hover_s:.1f} ms | {sizes(doc)} | {sizes(answer)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, nargs="+", default=[32, 1024, 8192])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = lmscope.load("smollm2-135m-instruct")
    print(
        "| tokens | analysis | flow at the last token | flow at a middle token | "
        "line frame | one hover (9 heads) | flow JSON (raw / gzip) | hover JSON (raw / gzip) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    for tokens in args.tokens:
        print(row(lm, tokens, args.repeats))


if __name__ == "__main__":
    main()
