"""Time steering against a plain pass: GPT-2 Small's shape (random weights) at 32 tokens and
SmolLM2-135M at 14 and 256 tokens; prints a markdown table.

    python benchmarks/bench_steering.py [--repeats 5] [--threads 2] [--models gpt2,smollm2]

Rows: one steered pass (the `trace.steering` hook on, nothing recorded) and `steer()` itself
(the two steering prompts' passes, the clean traced pass and the steered pass; with
`--new-tokens`, also the two greedy continuations). Each is the median of `repeats` runs after a
warm-up, with the median ratio to a plain pass (`trace.run`, last position unembedded, nothing
recorded) timed right before each run, as bench_experiments.py does.
"""

from __future__ import annotations

import argparse
import os

import torch
from bench_experiments import paired_times
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

import lmscope
from lmscope.core.catalog import DEMO_PATH, SMOLLM2_ID
from lmscope.core.loading import from_model
from lmscope.core.model import LoadedModel
from lmscope.core.trace import Steer, run, steering
from lmscope.experiments.steering import steer

WORDS = "the cat sat on the mat and looked at the dog while it rained outside "


def prompt_of(lm: LoadedModel, tokens: int) -> str:
    """A prompt of exactly `tokens` tokens for this tokenizer."""
    ids = lm.tokenizer.encode(WORDS * (tokens // 4 + 4), add_special_tokens=False)[:tokens]
    return lm.tokenizer.decode(ids)


def rows(lm: LoadedModel, tokens: int, repeats: int, new_tokens: int) -> list[str]:
    prompt = prompt_of(lm, tokens)
    ids = torch.tensor([lm.tokenizer.encode(prompt, add_special_tokens=False)])
    layer = lm.layers // 2
    vector = torch.randn(lm.card.hidden_size) * 0.1

    def plain():
        with torch.inference_mode():
            run(lm, ids, capture=False)

    def steered_pass():
        with torch.inference_mode(), steering(Steer(layer, vector)):
            run(lm, ids, capture=False)

    def full():
        steer(lm, prompt, layer, 4.0, prompts=["Love", "Hate"], new_tokens=0)

    def with_generation():
        steer(lm, prompt, layer, 4.0, prompts=["Love", "Hate"], new_tokens=new_tokens)

    cases = [("one steered pass", steered_pass), ("steer() (new_tokens=0)", full)]
    if new_tokens:
        cases.append((f"steer() with {new_tokens} greedy tokens x 2", with_generation))
    out = []
    for name, fn in cases:
        seconds, ratio = paired_times(fn, plain, repeats)
        out.append(f"| {lm.card.name} | {ids.shape[1]} | {name} | {seconds * 1000:.0f} ms | "
                   f"{ratio:.2f}x |")  # fmt: skip
    return out


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--repeats", type=int, default=5)
    args.add_argument("--threads", type=int, default=2)
    args.add_argument("--models", default="gpt2,smollm2")
    args.add_argument("--new-tokens", type=int, default=0)
    opts = args.parse_args()
    torch.set_num_threads(opts.threads)
    torch.manual_seed(0)
    table = ["| model | tokens | what | median | x plain pass |", "|---|---|---|---|---|"]
    models = opts.models.split(",")
    if "gpt2" in models:
        tokenizer = GPT2TokenizerFast.from_pretrained(DEMO_PATH)
        model = GPT2LMHeadModel(GPT2Config()).eval()
        lm = from_model(model, tokenizer, "openai-community/gpt2")
        table += rows(lm, 32, opts.repeats, opts.new_tokens)
    if "smollm2" in models:
        lm = lmscope.load(SMOLLM2_ID)
        for tokens in (14, 256):
            table += rows(lm, tokens, opts.repeats, opts.new_tokens)
    print(f"threads {opts.threads}, repeats {opts.repeats}, load average {os.getloadavg()}")
    print("\n".join(table))


if __name__ == "__main__":
    main()
