"""The read-out (unembedding) of a few residual rows: `x @ W^T` (nn.Linear) against `(W @ x^T)^T`
(`lmscope.core.model.read_out`), for GPT-2 Small's 50,257 x 768 and SmolLM2's 49,152 x 576
read-outs. A logit lens reads one row per layer plus one (13 on GPT-2 Small, 31 on SmolLM2).

    python benchmarks/bench_unembed.py [--repeats 11] [--busy]

Prints a markdown table of medians in milliseconds (torch's default threads, as lmscope runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as lmscope sets it, before torch loads

import torch

from lmscope.core.model import read_out

SHAPES = {"GPT-2 Small": (50257, 768), "SmolLM2-135M": (49152, 576)}
ROWS = (1, 4, 8, 13, 16, 31, 32)


def median_ms(work, repeats: int) -> float:
    for _ in range(3):
        work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--busy", action="store_true", help="beside one busy process")
    args = parser.parse_args()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    torch.manual_seed(0)
    print("| read-out | rows | nn.Linear (x @ W^T) | read_out ((W @ x^T)^T for 5-15 rows) |")
    print("|---|---:|---:|---:|")
    with torch.inference_mode():
        for name, (vocab, width) in SHAPES.items():
            head = torch.nn.Linear(width, vocab, bias=False)
            for rows in ROWS:
                x = torch.randn(rows, width)
                assert torch.allclose(head(x), read_out(head, x), atol=1e-4)
                linear = median_ms(lambda h=head, x=x: h(x), args.repeats)
                ours = median_ms(lambda h=head, x=x: read_out(h, x), args.repeats)
                print(f"| {name} | {rows} | {linear:.1f} ms | {ours:.1f} ms |")
    if busy is not None:
        busy.kill()


if __name__ == "__main__":
    main()
