"""One scored attention layer against sdpa: SmolLM2's shape (9 query heads, 3 key/value heads,
d_head 64), random queries, keys and values, 1 torch thread, glibc set as lmscope sets it.

    python benchmarks/bench_attention_layer.py [--tokens 512 2048 8192] [--rows 32 64 128]

For each length: sdpa's causal attention alone, then `LayerKeys.attend` (the output, every head's
pattern made block by block and scored on the way) with blocks of each number of query rows.
Prints a markdown table of medians (ms).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from lmscope.core import attention
from lmscope.core.attention import LayerKeys
from lmscope.core.heads import ScoreSums
from lmscope.core.trace import large_blocks_to_the_os

HEADS, KV_HEADS, WIDTH = 9, 3, 64


def median_ms(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, nargs="*", default=[512, 2048, 8192])
    parser.add_argument("--rows", type=int, nargs="*", default=[32, 64, 128, 256])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    large_blocks_to_the_os()
    print("| tokens | sdpa | " + " | ".join(f"attend, {r} rows" for r in args.rows) + " |")
    print("|---:|---:|" + "---:|" * len(args.rows))
    for tokens in args.tokens:
        torch.manual_seed(0)
        query = torch.randn(1, HEADS, tokens, WIDTH) * 2
        key = torch.randn(1, KV_HEADS, tokens, WIDTH) * 2
        value = torch.randn(1, KV_HEADS, tokens, WIDTH)
        ids = torch.randint(0, 300, (1, tokens))

        def sdpa(query=query, key=key, value=value) -> None:
            F.scaled_dot_product_attention(
                query, key, value, scale=0.125, is_causal=True, enable_gqa=True
            )

        def attend(query=query, key=key, value=value, ids=ids) -> None:
            LayerKeys(query, key, 0.125).attend(value, ScoreSums.start(ids, HEADS).add)

        repeats = max(1, args.repeats * 2048 // tokens)
        cells = [median_ms(sdpa, repeats)]
        for rows in args.rows:
            attention.ATTEND_ROWS = rows
            cells.append(median_ms(attend, repeats))
        print(f"| {tokens} | " + " | ".join(f"{c:.1f}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
