"""The cost estimate against the measured time, per operation and prompt length.

Every request is estimated before it runs (core/budget.py) from the model's measured speed
(core/speed.py, a short timed probe per model). This runs each operation for real and prints the
estimate beside the time it took: analyses from 32 to 8,192 tokens, the exact head-ablation scan,
patching (AtP and exact), token attribution and generation.

    python benchmarks/bench_estimates.py [--models demo smollm2-135m-instruct]
        [--lengths 32 256 512 2048 8192] [--analyses-only] [--fresh]

`--fresh` measures the speed probe anew (else a probe stored on disk is used, and its time reads
0). Each measured time is the faster of two runs (after a warm-up run), one run past 2,048 tokens.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("LMSCOPE_MAX_REQUEST_SECONDS", "inf")  # measure, do not refuse

import torch

from lmscope.core import budget, speed
from lmscope.core.analysis import analyze
from lmscope.core.loading import load_model
from lmscope.experiments.ablation import ablation_scan
from lmscope.experiments.attribution import token_attribution
from lmscope.experiments.generation import GenerationSettings, generate
from lmscope.experiments.patching import patch

WORDS = "the river keeps a slow map of every town it passes and".split()
CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"


def text_of(lm, tokens: int) -> str:
    text = " ".join(WORDS[i % len(WORDS)] for i in range(tokens + 8))
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
    return lm.tokenizer.decode(ids)


def timed(run, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def rows_for(lm, lengths: list[int], analyses_only: bool) -> list[tuple[str, object, object, int]]:
    """(what, estimate, run, repeats) for each operation benchmarked."""
    rows = []
    context = lm.card.context_length
    for tokens in [t for t in lengths if t <= context]:
        prompt = text_of(lm, tokens)
        n = len(lm.tokenizer(prompt)["input_ids"])
        repeats = 2 if tokens <= 2048 else 1
        rows.append((f"analysis, {n:,} tokens", budget.analysis(lm, n),
                     lambda p=prompt: analyze(lm, p), repeats))  # fmt: skip
    if analyses_only:
        return rows
    n = len(lm.tokenizer(CLEAN)["input_ids"])
    rows.append((f"exact head-ablation scan, {n} tokens", budget.scan(lm, n),
                 lambda: ablation_scan(lm, CLEAN), 2))  # fmt: skip
    for scan in ("atp", "exact"):
        rows.append((f"patching resid ({scan}), {n} tokens",
                     budget.patching(lm, n, "resid", scan, 10 if scan == "atp" else 0),
                     lambda s=scan: patch(lm, CLEAN, CORRUPT, " Mary", " John", scan=s), 2))  # fmt: skip
    used = token_attribution(lm, CLEAN, " Mary", wrong=" John").steps  # it stops when converged
    rows.append((f"token attribution ({used} path points, as it chose), {n} tokens",
                 budget.token_attribution(lm, n, used),
                 lambda: token_attribution(lm, CLEAN, " Mary", wrong=" John"), 1))  # fmt: skip
    settings = GenerationSettings(max_new_tokens=20)
    rows.append((f"20 greedy tokens after {n}", budget.generation(lm, n, 20),
                 lambda: generate(lm, CLEAN, settings), 2))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["demo", "smollm2-135m-instruct"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 256, 512, 2048, 8192])
    parser.add_argument("--analyses-only", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="measure the speed probe anew")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| model | operation | estimate (s) | measured (s) | measured / estimate |")
    print("|---|---|---|---|---|")
    for model_id in args.models:
        lm = load_model(model_id)
        if args.fresh:
            path = speed._cache_file(lm)
            if path is not None:
                path.unlink(missing_ok=True)
        started = time.perf_counter()
        measured_speed = speed.speed_of(lm)
        print(f"| {lm.card.name} | speed probe: {measured_speed.describe()} | | "
              f"{time.perf_counter() - started:.2f} | |")  # fmt: skip
        for what, estimate, run, repeats in rows_for(lm, args.lengths, args.analyses_only):
            if repeats > 1:
                run()  # warm-up
            measured = timed(run, repeats)
            ratio = measured / estimate.seconds
            print(f"| {lm.card.name} | {what} | {estimate.seconds:.2f} | {measured:.2f} | "
                  f"{ratio:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
