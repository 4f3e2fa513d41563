"""What scoring every head costs, and what building a model's head profile costs (GPT-2 Small's shape).

    python benchmarks/bench_heads.py [--lengths 32 128 512 1024] [--threads 1] [--profile-reps 3]

Scoring: `heads.score_heads` and `HeadReport.from_pattern` (scores, chance levels and a category per
head) on a `(12, 12, T, T)` attention pattern taken from a forward pass of GPT-2 Small's shape
(random seeded weights; the scores' cost does not depend on the values) over real English text (the
probe text, repeated to reach T tokens: every token of the second copy is a repeat, the heavy case
for the duplicate/induction gather). The forward pass itself is not timed. Profile: `measure_profile`
(the probe batch's forward pass plus scoring) and `head_profile` reading the disk cache back into a
fresh load. Prints a markdown table of medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
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
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 512, 1024])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile-reps", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="lmscope-bench-"))

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from lmscope.core.catalog import DEMO_PATH
    from lmscope.core.heads import HeadReport, score_heads
    from lmscope.core.loading import from_model
    from lmscope.core.profile import PROBE_TEXT, head_profile, measure_profile, profile_path
    from lmscope.core.trace import run

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = GPT2TokenizerFast.from_pretrained(DEMO_PATH)
    model = GPT2LMHeadModel(GPT2Config(attn_implementation="eager"))
    lm = from_model(model, tokenizer, "openai-community/gpt2")
    tokenizer.model_max_length = 1 << 30  # the probe text is one long string here, not a prompt
    text = tokenizer(PROBE_TEXT.read_text(), add_special_tokens=False)["input_ids"]

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}, "
        f"torch {torch.__version__}, python {sys.version.split()[0]}\n"
    )
    print("| what | T | median | reps |")
    print("|---|---|---|---|")
    for size in args.lengths:
        ids = torch.tensor((text * (size // len(text) + 1))[:size])
        with torch.inference_mode():
            _, rec = run(lm, ids.unsqueeze(0), capture=True)
            pattern = rec.stack("attn.hook_pattern", lm.layers)[:, 0].contiguous()
        reps = 200 if size <= 64 else 30 if size <= 256 else 5
        for name, fn in (
            ("score_heads, 144 heads", lambda p=pattern, i=ids: score_heads(p, i)),
            ("HeadReport.from_pattern", lambda p=pattern, i=ids: HeadReport.from_pattern(p, i)),
        ):
            fn()  # warm up
            seconds = median_time(fn, reps)
            print(f"| {name} | {size} | {seconds * 1000:.1f} ms | {reps} |", flush=True)
        del rec, pattern

    reps = args.profile_reps
    measure_profile(lm)  # warm up
    seconds = median_time(lambda: measure_profile(lm), reps)
    print(
        f"| measure_profile (8 x 48 text + 4 x 48 repeats, 1 pass) | 48 | {seconds:.2f} s | {reps} |"
    )
    loaded = dataclasses.replace(lm, revision="bench")
    head_profile(loaded)  # measured once, written to disk
    assert profile_path(loaded).is_file()
    seconds = median_time(lambda: head_profile(dataclasses.replace(lm, revision="bench")), 20)
    print(f"| head_profile from the disk cache (fresh load) | 48 | {seconds * 1000:.1f} ms | 20 |")


if __name__ == "__main__":
    main()
