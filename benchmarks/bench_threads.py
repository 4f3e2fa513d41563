"""Torch's threading policy on a small machine, quiet and beside a busy process.

Each configuration runs in a fresh interpreter (OMP_WAIT_POLICY is read when torch loads): one
forward pass of SmolLM2-135M on 14 tokens and of GPT-2 Small's shape on 32 tokens, median of
`--repeats` after two warm-ups. "busy" runs one pure-Python spinning process beside it, as a
browser drawing the page would.

    python benchmarks/bench_threads.py --repeats 9
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, statistics, sys, time
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel
threads, repeats = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
from lmscope.core.catalog import SMOLLM2_ID
from lmscope.core.model_cache import ModelCache
smol = ModelCache().get(SMOLLM2_ID).model
torch.manual_seed(0)
gpt2 = GPT2LMHeadModel(GPT2Config()).eval()
out = {}
for name, model, tokens in (("SmolLM2 14 tokens", smol, 14), ("GPT-2 Small 32 tokens", gpt2, 32)):
    ids = torch.randint(0, 40000, (1, tokens))
    times = []
    with torch.no_grad():
        for i in range(repeats + 2):
            start = time.perf_counter()
            model(input_ids=ids, logits_to_keep=1)
            if i >= 2:
                times.append(time.perf_counter() - start)
    out[name] = statistics.median(times)
print(json.dumps(out))
"""


def spin() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def measure(threads: int, policy: str | None, busy: bool, repeats: int) -> dict[str, float]:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    rival = spin() if busy else None
    try:
        time.sleep(0.2 if busy else 0)
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(threads), str(repeats)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        if rival:
            rival.kill()
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    print("| threads | OMP_WAIT_POLICY | machine | SmolLM2, 14 tokens | GPT-2 Small, 32 tokens |")
    print("|---|---|---|---|---|")
    for busy in (False, True):
        for threads, policy in ((1, None), (2, None), (2, "PASSIVE"), (1, "PASSIVE")):
            result = measure(threads, policy, busy, args.repeats)
            cells = " | ".join(f"{1000 * v:.0f} ms" for v in result.values())
            machine = "one busy process beside" if busy else "quiet"
            print(f"| {threads} | {policy or '(default)'} | {machine} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
