"""Token attribution's time on SmolLM2, before and after the error estimate changed: side by
side in one run (interleaved), on the 14-token IOI prompt, for log p(top) and logit(Mary) -
logit(John). Prints a markdown table.

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_attribution_speed.py

"before" is the rule as it was (a halved panel's error estimate |S2 - S1| to each half:
ERROR_SHARE = 1/2, refinement to completeness within 5%); "after" the rule now (Richardson's
|S2 - S1| / 15, half to each, refinement to completeness within 2%). "max |after - before|" is the
largest per-token difference of the two results (before is within 0.003-0.004 of a tight
reference, see benchmarks/results/attribution-speed.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from lmscope import load
from lmscope.core.catalog import SMOLLM2_ID
from lmscope.experiments import attribution

PROMPT = "When Mary and John went to the store, John gave a drink to"
RULES = {"before": (1 / 2, 0.05), "after": (attribution.ERROR_SHARE, attribution.COMPLETENESS_AIM)}
METRICS = {"log p(top)": (None, None), "logit(Mary) - logit(John)": (" Mary", " John")}


def timed(lm, rule: str, target, wrong) -> tuple[float, attribution.TokenAttribution]:
    share, aim = RULES[rule]
    kept = attribution.ERROR_SHARE, attribution.COMPLETENESS_AIM
    attribution.ERROR_SHARE, attribution.COMPLETENESS_AIM = share, aim
    try:
        start = time.perf_counter()
        result = attribution.token_attribution(lm, PROMPT, target, wrong=wrong)
        return time.perf_counter() - start, result
    finally:
        attribution.ERROR_SHARE, attribution.COMPLETENESS_AIM = kept


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("LMSCOPE_MAX_REQUEST_SECONDS", "100000")
    lm = load(SMOLLM2_ID)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} thread(s)\n")  # fmt: skip
    print("| metric | rule | points | seconds (median) | s / point | completeness | "
          "error estimate / tolerance | max abs(after - before) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, (target, wrong) in METRICS.items():
        runs: dict[str, list] = {"before": [], "after": []}
        for _ in range(args.repeats):
            for rule in runs:  # interleaved: the machine's load falls on both alike
                runs[rule].append(timed(lm, rule, target, wrong))
        before = runs["before"][0][1].integrated_gradients
        for rule, done in runs.items():
            seconds = sorted(s for s, _ in done)[len(done) // 2]
            result = done[0][1]
            diff = float((result.integrated_gradients - before).abs().max())
            print(f"| {name} | {rule} | {result.steps} | {seconds:.1f} | "
                  f"{seconds / result.steps:.3f} | {result.completeness_error:.2%} | "
                  f"{result.token_change:.3f} / {result.tolerance:.3f} | {diff:.4f} |")  # fmt: skip


if __name__ == "__main__":
    main()
