"""What the parity check every load runs costs (core/parity.py), beside the load it is part of.

    python benchmarks/bench_parity.py [--reps 5] [--threads 1] [--models gpt2-shape smollm2 gemma3-270m]

For each model: `parity.check` (the probe through lmscope's traced pass and through the model's own
forward), one bare forward pass of the same probe for scale, and the whole cached load (which
includes one check). GPT-2 Small's shape has seeded random weights (`GPT2Config()`); SmolLM2 and
Gemma 3 270M are the offline catalog models (their cache folders are made first if missing).
Prints a markdown table of medians and the machine's load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=["gpt2-shape", "smollm2"])
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    from lmscope.core import parity
    from lmscope.core.catalog import DEMO_PATH
    from lmscope.core.loading import from_model, load_model

    torch.set_num_threads(args.threads)
    ids = {"gpt2-shape": "GPT-2 Small's shape (random)", "smollm2": "SmolLM2 135M",
           "gemma3-270m": "Gemma 3 270M"}  # fmt: skip
    catalog = {"smollm2": "smollm2-135m-instruct", "gemma3-270m": "gemma3-270m"}
    rows = []
    for name in args.models:
        if name == "gpt2-shape":
            from transformers import GPT2TokenizerFast

            torch.manual_seed(0)
            tokenizer = GPT2TokenizerFast.from_pretrained(DEMO_PATH)

            def load(tokenizer=tokenizer):
                model = GPT2LMHeadModel(GPT2Config(attn_implementation="eager"))
                return from_model(model, tokenizer, "gpt2-shape")
        else:

            def load(model_id=catalog[name]):
                return load_model(model_id)

        lm = load()
        probe = parity.probe_ids(lm)

        def bare(lm=lm, probe=probe):
            with torch.inference_mode():
                lm.model(input_ids=probe, logits_to_keep=1)

        bare()
        check = median_time(lambda lm=lm: parity.check(lm), args.reps)
        rows.append(
            (ids[name], probe.shape[1], check, median_time(bare, args.reps),
             median_time(load, max(1, args.reps // 2)), lm.card.parity)
        )  # fmt: skip
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"Python {platform.python_version()}, {args.threads} thread(s), "
          f"load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print(
        "| model | probe tokens | parity check | one bare pass of the probe | whole load | card |"
    )
    print("|---|---|---|---|---|---|")
    for name, tokens, check, bare_time, load_time, sentence in rows:
        print(f"| {name} | {tokens} | {check * 1e3:.0f} ms | {bare_time * 1e3:.0f} ms | "
              f"{load_time:.2f} s | {sentence} |")  # fmt: skip


if __name__ == "__main__":
    main()
