"""What loading an offline catalog model from its GGUF file costs: the first load, the cached load.

    python benchmarks/bench_loading.py [--model smollm2|gemma3-270m] [--reps 3] [--threads 1]

First load: `load_model("smollm2-135m-instruct")` (or `gemma3-270m`) into an empty cache (a fresh
XDG_CACHE_HOME each time): for Gemma, join the package's chunks into the cache; read the config from
the GGUF metadata, dequantize with transformers, write the cache folder, load that folder. Cached load: the same call once the folder is there (what every later CLI
call, API request or `lmscope.load` does). For comparison: the cached folder named as a plain local
folder, and hashing the whole file (done once per file; later loads find the hash on disk).
Prints a markdown table of medians and the machine's load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
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
    parser.add_argument("--model", choices=["smollm2", "gemma3-270m"], default="smollm2")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    from lmscope.core import gguf
    from lmscope.core.catalog import CATALOG, GEMMA3_ID, SMOLLM2_ID, packaged_file
    from lmscope.core.loading import load_model

    torch.set_num_threads(args.threads)
    model_id = {"smollm2": SMOLLM2_ID, "gemma3-270m": GEMMA3_ID}[args.model]
    name = next(e.name for e in CATALOG if e.id == model_id)
    path = packaged_file(model_id)
    scratch = tempfile.mkdtemp(prefix="lmscope-bench-loading-")

    def first() -> None:
        os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(dir=scratch)
        gguf._DIGESTS.clear()  # a new process would not have it in memory either
        load_model(model_id)

    def cached() -> None:
        gguf._DIGESTS.clear()
        load_model(model_id)

    def hashed() -> None:
        gguf._DIGESTS.clear()
        for memo in (gguf.cache_root() / "digests").glob("*"):
            memo.unlink()
        gguf.content_digest(path)

    load_before = os.getloadavg()
    rows = [("first load (dequantize, write the cache, load it)", median_time(first, args.reps))]
    folder = gguf.GgufFile(path, gguf.content_digest(path)).folder
    rows.append(("cached load (catalog id)", median_time(cached, args.reps)))
    plain = median_time(lambda: load_model(str(folder), allow_local_path=True), args.reps)
    rows.append(("the cached folder as a plain local folder", plain))
    rows.append(
        (
            f"sha256 of the whole {path.stat().st_size / 1e6:.0f} MB file (first load only)",
            median_time(hashed, args.reps),
        )
    )
    load_after = os.getloadavg()
    shutil.rmtree(scratch, ignore_errors=True)

    print(f"{name} ({path.name}, {path.stat().st_size / 1e6:.0f} MB)")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, ", end="")
    print(f"{platform.processor() or platform.machine()}, Python {sys.version.split()[0]}")
    print(f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f}\n")
    print(f"| step | median of {args.reps} |")
    print("|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} s |")


if __name__ == "__main__":
    main()
