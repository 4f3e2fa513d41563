"""What the experiments of issue 12 cost in plain forward passes: the AtP scans, exact residual
patching, the exact head-ablation scan and steering, each timed right after a plain pass.

    python benchmarks/bench_experiment_passes.py [--repeats 5] [--threads 1]
        [--cases gpt2:32,smollm2:14,smollm2:256] [--only atp-heads,steer]

Cases: GPT-2 Small's shape (`GPT2Config()`, random weights) and SmolLM2-135M-Instruct, each at a
prompt length. The clean prompt is the IOI sentence ("When Mary and John went to the store, John
gave a drink to"), the corruption swaps which name repeats; both are padded in front by the same
text to the case's token count. The metric is logit(" Mary") - logit(" John"). Each row is the
median of `repeats` runs and the median of the paired ratios to a plain pass (`trace.run` under
inference mode, last position unembedded, nothing recorded) timed right before each run, beside
the pass count lmscope's budget estimates for it (what the 413 limit is checked against).
AtP's target (issue 12): at most 4 plain passes. The exact scans are not warmed up (each is many
passes already); every other operation is run once before it is timed.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from bench_experiments import paired_times
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

import lmscope
from lmscope.core import budget
from lmscope.core.catalog import DEMO_PATH, SMOLLM2_ID
from lmscope.core.loading import from_model
from lmscope.core.model import LoadedModel
from lmscope.core.trace import run
from lmscope.experiments.ablation import ablation_scan
from lmscope.experiments.ablation_atp import ablation_estimate
from lmscope.experiments.patching import patch
from lmscope.experiments.steering import steer

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
ANSWER, WRONG = " Mary", " John"
FILLER = (
    "The morning was quiet in the small town by the river. Shops opened one by one, the baker "
    "set out fresh bread, and children walked to school under the old oak trees. "
)


@dataclass
class Operation:
    key: str
    name: str
    run: Callable[[], object]
    passes: float | None  # the budget's estimate, in plain passes of the prompt
    warm_up: bool = True


def gpt2_small_shape() -> LoadedModel:
    torch.manual_seed(0)
    tokenizer = GPT2TokenizerFast.from_pretrained(DEMO_PATH)
    model = GPT2LMHeadModel(GPT2Config(attn_implementation="eager")).eval()
    return from_model(model, tokenizer, "openai-community/gpt2")


def count(lm: LoadedModel, text: str) -> int:
    return len(lm.tokenizer.encode(text, add_special_tokens=False))


def prompt_pair(lm: LoadedModel, tokens: int) -> tuple[str, str]:
    """The clean and corrupted prompts, both exactly `tokens` tokens: the IOI pair behind the
    same prefix of `FILLER` (searched token by token, as a prefix's text may tokenize apart)."""
    filler = lm.tokenizer.encode(FILLER * (tokens // 20 + 2), add_special_tokens=False)
    for k in range(max(0, tokens - count(lm, CLEAN) - 4), len(filler)):
        prefix = lm.tokenizer.decode(filler[:k]).strip()
        clean, corrupt = (
            (f"{prefix} {CLEAN}", f"{prefix} {CORRUPT}") if prefix else (CLEAN, CORRUPT)
        )
        if count(lm, clean) == tokens == count(lm, corrupt):
            return clean, corrupt
        if count(lm, clean) > tokens:
            break
    raise SystemExit(f"{lm.card.name}: no IOI pair of exactly {tokens} tokens")


def operations(lm: LoadedModel, clean: str, corrupt: str, tokens: int) -> list[Operation]:
    def atp_heads(check: int):
        return lambda: ablation_estimate(lm, clean, "zero", ANSWER, WRONG, check=check)

    def patching(scan: str):
        return lambda: patch(lm, clean, corrupt, ANSWER, WRONG, component="resid", scan=scan,
                             check=0)  # fmt: skip

    def passes(estimate: budget.Estimate) -> float:
        return estimate.passes

    return [
        Operation("atp-heads", "AtP head-ablation scan (no check)", atp_heads(0),
                  passes(budget.ablation_estimate(lm, tokens, False, 0))),
        Operation("atp-check", "AtP head-ablation scan + exact check of its top 10", atp_heads(10),
                  passes(budget.ablation_estimate(lm, tokens, False, 10))),
        Operation("atp-resid", "AtP residual patching (denoising, no check)", patching("atp"),
                  passes(budget.patching(lm, tokens, "resid", "atp", 0))),
        Operation("exact-resid", "exact residual patching (every layer x position)",
                  patching("exact"), passes(budget.patching(lm, tokens, "resid", "exact", 0)),
                  warm_up=False),
        Operation("exact-heads", "exact head-ablation scan (every head alone)",
                  lambda: ablation_scan(lm, clean, target=ANSWER, wrong=WRONG),
                  passes(budget.scan(lm, tokens)), warm_up=False),
        Operation("steer", "steer() from two prompts (new_tokens=0)",
                  lambda: steer(lm, clean, lm.layers // 2, 4.0, prompts=["Love", "Hate"],
                                new_tokens=0), None),
    ]  # fmt: skip


def rows(lm: LoadedModel, tokens: int, repeats: int, only: set[str] | None) -> list[str]:
    clean, corrupt = prompt_pair(lm, tokens)
    ids = torch.tensor([lm.tokenizer.encode(clean, add_special_tokens=False)])

    def plain():
        with torch.inference_mode():
            run(lm, ids, capture=False)

    plain()
    seconds, ratio = paired_times(plain, plain, repeats)  # the ratio shows the noise
    out = [f"| {lm.card.name} | {tokens} | plain pass | 1 | {seconds * 1000:.0f} | {ratio:.2f} |"]
    print(out[-1], flush=True)
    for op in operations(lm, clean, corrupt, tokens):
        if only is not None and op.key not in only:
            continue
        if op.warm_up:
            op.run()
        seconds, ratio = paired_times(op.run, plain, repeats, warm_up=False)
        estimate = "-" if op.passes is None else f"{op.passes:.1f}"
        out.append(f"| {lm.card.name} | {tokens} | {op.name} | {estimate} | "
                   f"{seconds * 1000:.0f} | {ratio:.2f} |")  # fmt: skip
        print(out[-1], flush=True)
    return out


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--repeats", type=int, default=5)
    args.add_argument("--threads", type=int, default=1)
    args.add_argument("--cases", default="gpt2:32,smollm2:14,smollm2:256",
                      help="MODEL:TOKENS, comma separated; MODEL is gpt2 or smollm2")  # fmt: skip
    args.add_argument("--only", help="operation keys, comma separated: atp-heads, atp-check, "
                      "atp-resid, exact-resid, exact-heads, steer (default: all)")  # fmt: skip
    opts = args.parse_args()
    torch.set_num_threads(opts.threads)
    os.environ[budget.SECONDS_ENV] = "inf"  # a benchmark measures what the server would refuse
    only = set(opts.only.split(",")) if opts.only else None
    models: dict[str, LoadedModel] = {}
    table = [
        "| model | tokens | operation | budget's estimate (passes) | median (ms) | "
        "x plain pass (median of paired ratios) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for case in opts.cases.split(","):
        name, _, tokens = case.partition(":")
        if name not in ("gpt2", "smollm2") or not tokens.isdigit():
            raise SystemExit(f"--cases: MODEL:TOKENS with MODEL gpt2 or smollm2, got {case!r}")
        if name not in models:
            models[name] = gpt2_small_shape() if name == "gpt2" else lmscope.load(SMOLLM2_ID)
        table += rows(models[name], int(tokens), opts.repeats, only)
    print(f"\ntorch {torch.__version__}, {opts.threads} threads, repeats {opts.repeats}, "
          f"load average {os.getloadavg()}\n")  # fmt: skip
    print("\n".join(table))


if __name__ == "__main__":
    main()
