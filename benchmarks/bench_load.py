"""Load test of the JSON API on loopback: N concurrent clients for a bounded time.

Starts `lmscope serve` in its own process, computes each request's answer once sequentially, then runs
1, 4 and 16 client threads sending analyses and ablations for `--seconds` each, and reports throughput,
median and 99th-percentile latency, errors (must be 0), and answers that differ from the sequential one
(must be 0). Only 127.0.0.1 is contacted; every loop is bounded in count and time.

    python benchmarks/bench_load.py --model demo --seconds 20 [--write benchmarks/results/load.md]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

PROMPTS = [
    "The cat sat on the mat because it was",
    "one two three four five one two three four",
    "When Mary and John went to the store, John gave a drink to",
    "The Eiffel Tower is located in the city of",
]
MAX_REQUESTS_PER_CLIENT = 10_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def requests_for(model: str) -> list[tuple[str, dict]]:
    """The request mix: an analysis and a two-head ablation per prompt."""
    mix = []
    for prompt in PROMPTS:
        mix.append(("/api/analyze", {"model": model, "prompt": prompt}))
        heads = [[0, 0], [1, 1]]
        mix.append(
            ("/api/ablate", {"model": model, "prompt": prompt, "heads": heads, "mode": "zero"})
        )
    return mix


def call(base: str, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        base + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            status, answer = response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        status, answer = error.code, {"error": error.read().decode()[:200]}
    answer.pop("analysis_id", None)  # fresh per request by design
    return status, answer


def start_server(model: str, port: int) -> subprocess.Popen:
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "lmscope.cli", "serve", "--model", model, "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited: {server.stderr.read().decode()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models", timeout=2).read()
            return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("server did not start within 300 s")


def run_clients(base: str, mix, expected, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = mismatches = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(offset: int) -> None:
        nonlocal errors, mismatches
        for i in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() >= stop_at:
                return
            path, body = mix[(offset + i) % len(mix)]
            start = time.perf_counter()
            status, answer = call(base, path, body)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                errors += status != 200
                mismatches += status == 200 and answer != expected[(offset + i) % len(mix)]

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    ordered = sorted(latencies)
    return {
        "clients": clients,
        "requests": len(ordered),
        "throughput": len(ordered) / wall,
        "median_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
        "errors": errors,
        "mismatches": mismatches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--write", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args()
    port = free_port()
    server = start_server(args.model, port)
    base = f"http://127.0.0.1:{port}"
    try:
        mix = requests_for(args.model)
        expected = []
        for path, body in mix:
            status, answer = call(base, path, body)
            if status != 200:
                raise SystemExit(f"{path} failed sequentially: {answer}")
            expected.append(answer)
        rows = [
            run_clients(base, mix, expected, int(n), args.seconds) for n in args.clients.split(",")
        ]
    finally:
        server.terminate()
        server.wait(timeout=30)
    header = "| clients | requests | throughput (req/s) | median (ms) | p99 (ms) | errors | differ from sequential |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['clients']} | {r['requests']} | {r['throughput']:.1f} | {r['median_ms']:.0f} "
            f"| {r['p99_ms']:.0f} | {r['errors']} | {r['mismatches']} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.write:
        command = "python benchmarks/bench_load.py " + " ".join(sys.argv[1:])
        args.write.write_text(
            "# Load test of the JSON API (loopback)\n\n"
            f"Command: `{command}`\n\nMachine: 2 CPU cores, 24 GiB, no GPU. Model: `{args.model}`; "
            f"request mix: an analysis and a 2-head zero ablation for each of {len(PROMPTS)} prompts; "
            f"{args.seconds:.0f} s per row.\n\n{table}\n"
        )
    if any(r["errors"] or r["mismatches"] for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
