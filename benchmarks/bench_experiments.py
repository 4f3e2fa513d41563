"""Time the experiments on GPT-2 Small's shape (random weights) at 32 tokens; prints a markdown table.

    python benchmarks/bench_experiments.py [--repeats 5] [--threads 2]

Each row is the median of `repeats` timed runs after one warm-up, and the median ratio to a plain
forward pass (one `trace.run`, last position unembedded, nothing recorded) timed just before each.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

from lmscope.core.analysis import analyze
from lmscope.core.catalog import DEMO_PATH
from lmscope.core.loading import from_model
from lmscope.core.trace import HeadPatch, run
from lmscope.experiments.ablation import ablate, ablation_scan
from lmscope.experiments.attribution import (
    DEFAULT_STEPS,
    direct_logit_attribution,
    token_attribution,
)
from lmscope.experiments.generation import GenerationSettings, generate


def paired_times(
    fn: Callable[[], object], plain: Callable[[], object], repeats: int, warm_up: bool = True
) -> tuple[float, float]:
    """Median time of `fn` and median ratio to a plain pass timed right before each run (after
    one warm-up run of `fn` unless `warm_up` is False).

    Pairing keeps the ratio honest on a shared machine whose load changes minute to minute.
    """
    if warm_up:
        fn()
    times, ratios = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        plain()
        middle = time.perf_counter()
        fn()
        end = time.perf_counter()
        times.append(end - middle)
        ratios.append((end - middle) / (middle - start))
    return statistics.median(times), statistics.median(ratios)


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--repeats", type=int, default=5)
    args.add_argument("--threads", type=int, default=2)
    args.add_argument("--tokens", type=int, default=32)
    opts = args.parse_args()
    torch.set_num_threads(opts.threads)
    torch.manual_seed(0)
    tokenizer = GPT2TokenizerFast.from_pretrained(DEMO_PATH)
    lm = from_model(GPT2LMHeadModel(GPT2Config(attn_implementation="eager")), tokenizer, "gpt2")
    text = "When Mary and John went to the store, John gave a drink to Mary. " * 4
    prompt = tokenizer.decode(tokenizer(text)["input_ids"][: opts.tokens])
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    assert ids.shape[1] == opts.tokens, ids.shape
    patch = {5: HeadPatch(torch.tensor([1.0] * 3 + [0.0] + [1.0] * 8), torch.zeros(12, 64))}
    analysis = analyze(lm, prompt)

    def forward(patches=None):
        with torch.inference_mode():
            run(lm, ids, capture=False, patches=patches)

    rows = [
        ("plain forward pass", lambda: forward()),
        ("one ablation (forward pass with L5-H3 zeroed)", lambda: forward(patch)),
        ("`ablate()` next token only (clean + ablated pass)", lambda: ablate(lm, prompt, [(5, 3)], new_tokens=0)),
        ("full 144-head ablation scan", lambda: ablation_scan(lm, prompt)),
        ("`analyze()` (traced pass + head scores)", lambda: analyze(lm, prompt)),
        ("direct logit attribution (on an analysis)", lambda: direct_logit_attribution(analysis)),
        (f"integrated gradients ({DEFAULT_STEPS} steps, + gradient x input)", lambda: token_attribution(lm, prompt)),
        ("greedy generation, 20 new tokens", lambda: generate(lm, prompt, GenerationSettings("greedy", 20))),
    ]  # fmt: skip
    print(
        f"GPT-2 Small shape, {opts.tokens} tokens, {opts.threads} threads, median of {opts.repeats}\n"
    )
    print("| operation | median (ms) | x plain forward (paired) |")
    print("|---|---:|---:|")
    for name, fn in rows:
        seconds, ratio = paired_times(fn, rows[0][1], opts.repeats)
        print(f"| {name} | {seconds * 1000:.0f} | {ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
