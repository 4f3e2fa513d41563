"""What a full analysis costs next to a bare transformers forward pass, for GPT-2 Small's shape.

    python benchmarks/bench_analysis.py [--lengths 8 32 128 512 1024] [--reps 7] [--threads 1]

For each prompt length, one subprocess times `lmscope.core.analysis.analyze` and a bare eager forward
pass with `output_attentions=True` (all logits, as transformers computes them by default), interleaved
rep by rep on the same weights, and reports the medians; a third interleaved pass, the bare one with
`logits_to_keep=1`, is like for like (an analysis unembeds only the last position), so the ratio to
it is the cost of recording activations and scoring heads alone. Two more subprocesses per length each run
one kind of pass alone and report their peak resident memory during that pass, model included
(Linux: VmHWM after resetting it through /proc/self/clear_refs once the weights are built;
elsewhere `ru_maxrss`, which also counts building the weights).
Weights are random (seeded): speed does not depend on their values. `--profile N` prints where the
time of an N-token analysis goes instead.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import json
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

TARGET = 1.25
# Common words GPT-2 reads as one token each with their leading space.
WORDS = (
    "the cat sat on a mat and the dog ran to the park while people were talking about "
    "what they had seen in the city last year when it was cold"
).split()


def build(threads: int):
    """GPT-2 Small's shape with seeded random weights: the traced model and a hook-free twin."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from lmscope.core.catalog import DEMO_PATH
    from lmscope.core.loading import from_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(attn_implementation="eager")).eval()
    tokenizer = GPT2TokenizerFast.from_pretrained(DEMO_PATH)
    tokenizer.model_max_length = 1024  # GPT-2's own; the demo model's files say 256
    return model, tokenizer, from_model


def prompt_of(tokenizer, length: int) -> str:
    """A prompt of exactly `length` GPT-2 tokens."""
    text = "".join(" " + WORDS[i % len(WORDS)] for i in range(length))
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == length, (len(ids), length)
    return text


def time_worker(length: int, reps: int, threads: int) -> dict:
    import torch

    from lmscope.core.analysis import analyze

    model, tokenizer, from_model = build(threads)
    bare = copy.deepcopy(model)  # no lmscope hooks on this one
    lm = from_model(model, tokenizer, "openai-community/gpt2")
    prompt = prompt_of(tokenizer, length)
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])

    def bare_pass(**kwargs) -> Callable[[], float]:
        def timed() -> float:
            start = time.perf_counter()
            with torch.inference_mode():
                out = bare(input_ids=ids, output_attentions=True, **kwargs)
            del out
            return time.perf_counter() - start

        return timed

    def run_analysis() -> float:
        start = time.perf_counter()
        analysis = analyze(lm, prompt)
        elapsed = time.perf_counter() - start
        assert analysis.attention.shape == (12, 12, length, length)
        return elapsed

    passes = {
        "bare": bare_pass(),  # transformers' default: logits at every position
        "analysis": run_analysis,
        "bare_last": bare_pass(logits_to_keep=1),  # like for like: analyze unembeds one position
    }
    times: dict[str, list[float]] = {name: [] for name in passes}
    for fn in passes.values():  # warm up
        fn()
    order = list(passes)
    for rep in range(reps):  # interleaved, rotating which goes first
        for name in order[rep % 3 :] + order[: rep % 3]:
            times[name].append(passes[name]())
    answer: dict = {"length": length}
    for name, values in times.items():
        answer[f"{name}_ms"] = statistics.median(values) * 1e3
        answer[f"{name}_all_ms"] = [round(v * 1e3, 1) for v in values]
    return answer


def memory_worker(length: int, kind: str, threads: int) -> dict:
    import gc

    import torch

    from lmscope.core.analysis import analyze

    model, tokenizer, from_model = build(threads)
    prompt = prompt_of(tokenizer, length)
    lm = from_model(model, tokenizer, "openai-community/gpt2") if kind == "analysis" else None
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    gc.collect()
    reset = reset_peak_rss()  # forget the peak of building the random weights
    model_mib = rss_mib("VmRSS")
    if lm is None:
        with torch.inference_mode():
            out = model(input_ids=ids, output_attentions=True)
        del out
    else:
        analysis = analyze(lm, prompt)
        del analysis
    peak = rss_mib("VmHWM") if reset else peak_rss_mib()
    return {"length": length, "kind": kind, "peak_rss_mib": peak, "model_rss_mib": model_mib}


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: writing 5 to clear_refs resets VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS now, VmHWM the peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return peak_rss_mib()


def peak_rss_mib() -> float:
    """This process's lifetime peak RSS (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def profile(length: int, threads: int) -> None:
    import torch

    from lmscope.core.analysis import analyze

    model, tokenizer, from_model = build(threads)
    lm = from_model(model, tokenizer, "openai-community/gpt2")
    prompt = prompt_of(tokenizer, length)
    analyze(lm, prompt)
    profiler = cProfile.Profile()
    profiler.enable()
    analyze(lm, prompt)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        analyze(lm, prompt)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


def child(*args: str) -> dict:
    """Run this script as a worker in a fresh process and read its JSON answer."""
    result = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{cpu}, {os.cpu_count()} CPU cores, torch {torch.__version__}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[8, 32, 128, 512, 1024])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest)")
    parser.add_argument("--profile", type=int, metavar="N", help="profile an N-token analysis")
    parser.add_argument("--worker", choices=["time", "bare", "analysis"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        (length,) = args.lengths
        if args.worker == "time":
            answer = time_worker(length, args.reps, args.threads)
        else:
            answer = memory_worker(length, args.worker, args.threads)
        print(json.dumps(answer))
        return
    if args.profile:
        profile(args.profile, args.threads)
        return

    common = ["--threads", str(args.threads)]
    print(f"GPT-2 Small shape (random weights), {args.threads} threads, median of {args.reps}")
    print(f"machine: {machine()}\n")
    print(
        "| tokens | bare (ms) | analysis (ms) | ratio | bare, last logits only (ms) "
        "| ratio to it | peak RSS bare (MiB) | peak RSS analysis (MiB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    worst, model_mib = 0.0, 0.0
    for length in args.lengths:
        lengths = ["--lengths", str(length)]
        timing = child("--worker", "time", "--reps", str(args.reps), *lengths, *common)
        analysis = child("--worker", "analysis", *lengths, *common)
        bare = child("--worker", "bare", *lengths, *common)
        model_mib = max(model_mib, bare["model_rss_mib"])
        ratio = timing["analysis_ms"] / timing["bare_ms"]
        worst = max(worst, ratio)
        print(
            f"| {length} | {timing['bare_ms']:.1f} | {timing['analysis_ms']:.1f} | "
            f"{ratio:.2f}x | {timing['bare_last_ms']:.1f} | "
            f"{timing['analysis_ms'] / timing['bare_last_ms']:.2f}x | "
            f"{bare['peak_rss_mib']:,.0f} | {analysis['peak_rss_mib']:,.0f} |",
            flush=True,
        )
        every = ", ".join(
            f"{k.removesuffix('_all_ms')} {v}" for k, v in timing.items() if "_all" in k
        )
        print(f"{length} tokens, every rep (ms): {every}", file=sys.stderr)
    print(f"\npeak RSS includes the model itself: {model_mib:,.0f} MiB resident before the pass")
    verdict = "meets" if worst <= TARGET else "MISSES"
    print(f"\nworst ratio {worst:.2f}x: {verdict} the target of at most {TARGET}x the bare pass")


if __name__ == "__main__":
    main()
