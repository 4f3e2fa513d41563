"""What the HTTP path adds to an analysis: `POST /api/analyze` on the real server (waitress, as
`lmscope serve` runs it, on loopback) against `analyze()` + `json.dumps(to_dict())` in the same
process, with the same torch threads, interleaved request by request.

Also breaks the server's fixed cost into its parts on one request (profiled with time stamps):
parsing and guards, the analysis, storing it, encoding the JSON, compressing it.

    python benchmarks/bench_http.py [--tokens 32 512] [--repeats 15] [--busy]

`--busy` runs a spinning process beside it (the machine shared, as with a browser). Model: GPT-2
Small's shape with seeded random weights (`GPT2Config()`), the real GPT-2 tokenizer.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as lmscope serve sets it, before torch loads

import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

from lmscope.core.analysis import analyze
from lmscope.core.catalog import DEMO_PATH
from lmscope.core.loading import from_model
from lmscope.core.model_cache import ModelCache
from lmscope.service import Service
from lmscope.web.server import dashboard_app
from lmscope.web.wsgi import make_server

WORDS = "the river keeps a slow map of every town it passes and".split()


def prompt_of(tokens: int, tokenizer) -> str:
    text = " ".join(WORDS[i % len(WORDS)] for i in range(tokens))
    ids = tokenizer(text)["input_ids"][:tokens]
    return tokenizer.decode(ids)


def post(port: int, body: bytes) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Content-Type": "application/json", "Accept-Encoding": "gzip, br"}
    connection.request("POST", "/api/analyze", body=body, headers=headers)
    answer = connection.getresponse()
    data = answer.read()
    connection.close()
    if answer.status != 200:
        raise SystemExit(f"{answer.status}: {data[:300]!r}")
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, nargs="+", default=[32, 512])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--busy", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    tokenizer = GPT2TokenizerFast.from_pretrained(DEMO_PATH)
    lm = from_model(GPT2LMHeadModel(GPT2Config()), tokenizer, "openai-community/gpt2")
    service = Service(ModelCache(budget=2**34))
    service.models.add(lm)
    app = dashboard_app(service, "openai-community/gpt2")
    server = make_server(app.server, "127.0.0.1", 0)
    threading.Thread(target=server.run, daemon=True).start()
    port = int(server.effective_port)
    spinner = None
    if args.busy:
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, busy={args.busy}")
    print("| tokens | in-process analyze + JSON (ms) | POST /api/analyze (ms) | ratio | bytes |")
    print("|---|---|---|---|---|")
    try:
        for tokens in args.tokens:
            prompt = prompt_of(tokens, tokenizer)
            body = json.dumps({"model": "openai-community/gpt2", "prompt": prompt}).encode()
            for _ in range(2):  # warm both paths
                json.dumps(analyze(lm, prompt).to_dict())
                post(port, body)
            local, remote, size = [], [], 0
            for _ in range(args.repeats):
                started = time.perf_counter()
                json.dumps(analyze(lm, prompt).to_dict())
                local.append(time.perf_counter() - started)
                started = time.perf_counter()
                size = len(post(port, body))
                remote.append(time.perf_counter() - started)
            a, b = statistics.median(local), statistics.median(remote)
            print(f"| {tokens} | {a * 1e3:.0f} | {b * 1e3:.0f} | {b / a:.2f} | {size:,} |")
    finally:
        if spinner is not None:
            spinner.kill()
        server.close()


if __name__ == "__main__":
    main()
