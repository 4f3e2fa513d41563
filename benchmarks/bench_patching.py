"""Attribution patching against exact patching on SmolLM2-135M-Instruct (IOI); prints markdown.

    python benchmarks/bench_patching.py [--threads 1] [--k 10]

The clean prompt is the IOI sentence "When Mary and John went to the store, John gave a drink to"
(answer " Mary"), the corruption swaps which name repeats ("..., Mary gave a drink to", the same
14 tokens); the metric is logit(" Mary") - logit(" John"). For each component and direction: the
Spearman rank correlation and top-k overlap of AtP's estimate with the exact scan over every cell
(270 heads for `heads`), the cells the exact check of AtP's top k confirms (an exact effect at
least half of the strongest exact one), and wall times beside a plain forward pass.
"""

from __future__ import annotations

import argparse
import time

import torch

import lmscope
from lmscope.core.trace import run
from lmscope.experiments.ablation_atp import ablation_estimate
from lmscope.experiments.atp import agreement, strongest
from lmscope.experiments.patching import check_top, estimate, exact, pair

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"


def timed(fn, *args, **kwargs):
    """`fn(*args, **kwargs)` and its wall time in seconds."""
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = lmscope.load("smollm2-135m-instruct")
    p = pair(lm, CLEAN, CORRUPT, " Mary", " John")
    with torch.inference_mode():
        run(lm, p.clean, capture=False)
        _, plain = timed(run, lm, p.clean, capture=False)
    print(f"{lm.card.name}, {p.tokens} tokens; {p.metric.label}: clean {p.clean_metric:.3f}, "
          f"corrupted {p.corrupt_metric:.3f}; plain pass {plain * 1000:.0f} ms\n")  # fmt: skip
    print("| component | direction | cells | Spearman | top-10 overlap | AtP (s) | exact scan (s) "
          "| exact check of AtP top 10 (s) | confirmed by the check |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for component in ("heads", "resid", "attn", "mlp"):
        for direction in ("denoising", "noising"):
            unpatched = 0.0 if direction == "denoising" else 1.0
            atp, t_atp = timed(estimate, p, component, direction)
            full, t_exact = timed(exact, p, component, direction)
            full = full.reshape(atp.shape)
            checked, t_check = timed(check_top, p, component, direction, atp, args.k)
            rho = spearman_and_overlap(atp - unpatched, full - unpatched, args.k)
            strongest_exact = float((full - unpatched).abs().max())
            names = [
                name_of(p, component, tuple(c["cell"]))
                for c in checked
                if abs(c["exact"] - unpatched) >= 0.5 * strongest_exact
            ]
            print(f"| {component} | {direction} | {full.numel()} | {rho[0]:.3f} | {rho[1]}/{args.k} "
                  f"| {t_atp:.2f} | {t_exact:.2f} | {t_check:.2f} | {', '.join(names)} |")  # fmt: skip
    print("\nHead-ablation scan (log p(' Mary') change; 270 heads), AtP against the exact scan:\n")
    print("| mode | Spearman | top-10 overlap | AtP + check of 10 (s) | AtP + exact scan (s) | "
          "strongest exact heads |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---|")
    for mode in ("zero", "mean"):
        _, t_est = timed(ablation_estimate, lm, CLEAN, mode, " Mary", check=args.k)
        both, t_both = timed(ablation_estimate, lm, CLEAN, mode, " Mary", exact=True, check=0)
        agreement = both.agreement(args.k)
        top = ", ".join(f"L{l}-H{h}" for l, h in strongest(both.exact, 5))
        print(f"| {mode} | {agreement['spearman']:.3f} | {agreement['top_k_overlap']}/{args.k} "
              f"| {t_est:.2f} | {t_both:.2f} | {top} |")  # fmt: skip


def spearman_and_overlap(estimate_effect, exact_effect, k):
    a = agreement(estimate_effect, exact_effect, k)
    return a["spearman"], a["top_k_overlap"]


def name_of(p, component, cell) -> str:
    layer, column = cell
    if component == "heads":
        return f"L{layer}-H{column}"
    return f"L{layer}@{column}{p.clean_tokens[column].display}"


if __name__ == "__main__":
    main()
