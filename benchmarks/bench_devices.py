"""The same work on the GPU and on the CPU: analysis, head-ablation scan, patching, generation.

    python benchmarks/bench_devices.py [--lengths 1024 8192] [--reps 3] [--budget 300]
        [--setups cuda:bfloat16 cpu:float32 cuda:float32] [--out benchmarks/results/gpu.md]

The model is SmolLM2-135M's shape (30 layers, 9 query / 3 key-value heads, d 576, 8,192
positions, 49,152-token vocabulary, tied) with seeded random weights, saved once as a folder and
loaded by `load_model` in each setup (device:dtype), as `lmscope --device --dtype` loads it: speed
does not depend on the weights' values, and a real model's files cannot reach a machine with no
network. Prompts are common words GPT-2's tokenizer reads as one token each. Work per length:
`analysis` (`analyze`: the traced pass, every head scored, the logit lens), `scan` (the default
head-ablation scan: AtP's forward and backward pass, its 10 strongest heads ablated exactly),
`patching` (residual-stream AtP between two prompts that differ in one token, its 10 strongest
cells patched exactly), `generation` (20 greedy tokens with the KV cache, then the pass that
reads every step's alternatives). Setups run in the order given; each piece of work runs once
to warm up, then `--reps` times (the median is reported; CUDA is synchronized around each). Work
is skipped, and the table says so, when lmscope's own cost estimate (core/budget.py, at the
device's measured speed) says its reps would take longer than what is left of `--budget`
seconds: the CPU at 8,192 tokens, most often. The table goes to `--out` with the machine it ran
on, rewritten after every row (a run stopped by a timeout keeps what it measured); each row
gives the estimate too, to check the measured speed (core/speed.py) against.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LMSCOPE_MAX_REQUEST_SECONDS", "inf")  # measure, never refuse
os.environ.setdefault("LMSCOPE_MAX_ANALYSIS_MEMORY", "64G")

import torch
import transformers
from transformers import GPT2TokenizerFast, LlamaConfig, LlamaForCausalLM

from lmscope.core import budget
from lmscope.core.analysis import analyze
from lmscope.core.catalog import DEMO_PATH
from lmscope.core.devices import placement
from lmscope.core.loading import load_model
from lmscope.core.speed import speed_of
from lmscope.experiments.ablation_atp import head_scan
from lmscope.experiments.generation import GenerationSettings, generate
from lmscope.experiments.patching import patch

WORDS = (
    "the cat sat on a mat and the dog ran to the park while people were talking about "
    "what they had seen in the city last year when it was cold"
).split()
NEW_TOKENS = 20
CHECK = 10


def smollm2_shape(folder: Path) -> Path:
    """SmolLM2-135M's shape, seeded random weights, saved with GPT-2's tokenizer."""
    config = LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=8192,
        rope_theta=100000.0, tie_word_embeddings=True, rms_norm_eps=1e-5,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    GPT2TokenizerFast.from_pretrained(DEMO_PATH).save_pretrained(folder)
    return folder


def prompt(tokens: int, last: str = "mat") -> str:
    """`tokens` one-token words, the last one `last` (the corrupted prompt changes it)."""
    words = [WORDS[i % len(WORDS)] for i in range(tokens - 1)] + [last]
    return " ".join(words)


def work(lm, tokens: int) -> dict:
    """Each benchmark: (what it runs, the cost estimate lmscope makes of it)."""
    text, corrupt = prompt(tokens), prompt(tokens, "dog")
    settings = GenerationSettings(max_new_tokens=NEW_TOKENS)
    short = prompt(tokens - NEW_TOKENS)
    return {
        "analysis": (lambda: analyze(lm, text), budget.analysis(lm, tokens)),
        "scan": (
            lambda: head_scan(lm, text, method="atp", check=CHECK),
            budget.ablation_estimate(lm, tokens, False, CHECK),
        ),
        "patching": (
            lambda: patch(lm, text, corrupt, component="resid", scan="atp", check=CHECK),
            budget.patching(lm, tokens, "resid", "atp", CHECK),
        ),
        "generation": (
            lambda: generate(lm, short, settings),
            budget.generation(lm, tokens - NEW_TOKENS, NEW_TOKENS),
        ),
    }


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = (
        f"{torch.cuda.get_device_name(0)} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB), "
        f"CUDA {torch.version.cuda}, "
        if torch.cuda.is_available()
        else "no GPU, "
    )
    return (
        f"{gpu}{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, transformers {transformers.__version__}, Python "
        f"{platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 8192])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for all of it")
    parser.add_argument(
        "--setups", nargs="+", default=["cuda:bfloat16", "cpu:float32", "cuda:float32"]
    )
    parser.add_argument("--only", nargs="+", help="benchmarks to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu.md"))
    args = parser.parse_args()
    started = time.perf_counter()
    folder = smollm2_shape(Path(tempfile.mkdtemp(prefix="bench-devices-")))
    rows, notes = [], []
    for setup in args.setups:
        device_name, dtype = setup.rsplit(":", 1)
        if device_name.startswith("cuda") and not torch.cuda.is_available():
            notes.append(f"{setup}: skipped, no CUDA GPU here")
            continue
        lm = load_model(str(folder), allow_local_path=True, placement=placement(device_name, dtype))
        for tokens in args.lengths:
            for name, (fn, estimate) in work(lm, tokens).items():
                if args.only and name not in args.only:
                    continue
                left = args.budget - (time.perf_counter() - started)
                if estimate.seconds * (args.reps + 1) > left:
                    notes.append(
                        f"{setup} {name} at {tokens:,} tokens: skipped, estimated "
                        f"{estimate.seconds:.3g} s a rep at {speed_of(lm).describe()} "
                        f"with {left:.0f} s left"
                    )
                    continue
                timed(fn, lm.device)  # warm-up: kernels, caches, the head profile's first use
                times = [timed(fn, lm.device) for _ in range(args.reps)]
                rows.append(
                    (name, tokens, setup, statistics.median(times), times, estimate.seconds)
                )
                write(args, rows, notes, time.perf_counter() - started)  # a timeout keeps these
                print(f"{name:10s} {tokens:6d} {setup:14s} {statistics.median(times):8.3f} s "
                      f"(estimate {estimate.seconds:.3g} s)", flush=True)  # fmt: skip
        del lm
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    print(write(args, rows, notes, time.perf_counter() - started))


def write(args, rows, notes, seconds: float) -> str:
    """The table so far, written to `--out` (and returned)."""
    base = {(n, t): m for n, t, s, m, _, _ in rows if s == "cpu:float32"}
    lines = [
        "# lmscope on a GPU: the same work on the GPU and on the CPU, in the same run",
        "",
        "Command (inside benchmarks/gpu_check.sh):",
        "",
        "    python " + " ".join(sys.argv),
        "",
        f"Machine: {machine()}. Whole run: {seconds:.0f} s.",
        "",
        "Model: SmolLM2-135M's shape with seeded random weights (see the script's docstring).",
        "Medians of the reps after one warm-up; `speed-up` is the CPU float32 median of the same",
        "work over this row's; `estimate` is lmscope's own cost estimate (core/budget.py) at the",
        "device's measured speed (core/speed.py), to check the estimate against.",
        "",
        "| work | tokens | device:dtype | median (s) | reps (s) | speed-up vs CPU float32 | estimate (s) |",
        "|---|---:|---|---:|---|---:|---:|",
    ]
    for name, tokens, setup, median, times, estimate in rows:
        cpu = base.get((name, tokens))
        speedup = f"{cpu / median:.1f}x" if cpu and setup != "cpu:float32" else "-"
        reps = ", ".join(f"{t:.3g}" for t in times)
        lines.append(
            f"| {name} | {tokens:,} | {setup} | {median:.3f} | {reps} | {speedup} | {estimate:.3g} |"
        )
    lines += ["", *(f"- {note}" for note in notes)] if notes else []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    args.out.write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
