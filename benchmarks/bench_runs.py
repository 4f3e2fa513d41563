"""Dataset runs: the local engine against a plain transformers loop, batching, Ray, peak memory.

    python benchmarks/bench_runs.py --part speed --model gpt2-small [--prompts 200] [--loop 20]
    python benchmarks/bench_runs.py --part batching
    python benchmarks/bench_runs.py --part ray [--prompts 200]
    python benchmarks/bench_runs.py --part memory [--prompts 200 2000]

The data are IOI-style prompts (`ioi_rows`: four templates, seeded random names, places and
objects; the corruption repeats the other name; answer the indirect object, wrong the subject).
`speed` times `lmscope.runs.execute` (the model already loaded) on `--prompts` rows against the
same experiment written the way a researcher would script it in plain transformers, one prompt at
a time (`loop_profile`: eager attention patterns scored with lmscope's formulas; `loop_patch_atp`:
forward hooks caching the clean residual stream, a backward pass of the corrupted run, then the
10 strongest cells patched one forward pass each), on `--loop-profile` and `--loop` rows. `ray` times whole runs of 20
and `--prompts` rows on each engine (model loading and, for Ray, starting a local cluster
included) and splits them into a fixed and a per-prompt cost. `memory` runs the local engine in a
fresh process per size and reads its peak resident memory. Medians of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

TEMPLATES = (  # {s}: the repeated name (the subject): {b} in the clean prompt, {a} corrupted
    "When{a} and{b} went to the {place},{s} gave a {thing} to",
    "Then,{a} and{b} had a long argument, and afterwards{s} said to",
    "After the lunch,{a} and{b} went to the {place}.{s} gave a {thing} to",
    "Friends{a} and{b} found a {thing} at the {place}.{s} gave it to",
)
NAMES = (
    "Mary John Tom James Paul David Sarah Anna Mark Peter Kate Lisa Jack Emma Alice Daniel".split()
)
PLACES = "store park school office garden station".split()
THINGS = "drink book ball ring bag key".split()


def ioi_rows(count: int, seed: int = 0) -> list[dict]:
    rng, rows = random.Random(seed), []
    for _ in range(count):
        a, b = (" " + n for n in rng.sample(NAMES, 2))
        template, place, thing = rng.choice(TEMPLATES), rng.choice(PLACES), rng.choice(THINGS)
        rows.append({
            "prompt": template.format(a=a, b=b, s=b, place=place, thing=thing),
            "corrupt": template.format(a=a, b=b, s=a, place=place, thing=thing),
            "answer": a,
            "wrong": b,
        })  # fmt: skip
    return rows


def write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def gpt2_small(eager: bool = False):
    """GPT-2 Small's shape with seeded random weights (the same weights on every call)."""
    from lmscope.core.catalog import DEMO_PATH

    torch.manual_seed(0)
    config = GPT2Config(attn_implementation="eager" if eager else "sdpa")
    return GPT2LMHeadModel(config).eval(), GPT2TokenizerFast.from_pretrained(DEMO_PATH)


def load(model: str):
    """(lmscope's LoadedModel, a plain transformers model with eager attention, its tokenizer)."""
    from lmscope.core.catalog import SMOLLM2_ID, packaged_file
    from lmscope.core.loading import from_model, load_model

    if model == "gpt2-small":
        lm = from_model(gpt2_small()[0], gpt2_small()[1], "gpt2-small-random")
        plain, tokenizer = gpt2_small(eager=True)
        return lm, plain, tokenizer
    lm = load_model(SMOLLM2_ID)
    path = packaged_file(SMOLLM2_ID)
    plain = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    return lm, plain, lm.tokenizer


def single_token_rows(tokenizer, count: int) -> list[dict]:
    """IOI rows whose names are one token each for this tokenizer."""
    rows = [
        r for r in ioi_rows(4 * count)
        if all(len(tokenizer.encode(r[k], add_special_tokens=False)) == 1 for k in ("answer", "wrong"))
    ]  # fmt: skip
    return rows[:count]


# -- the plain loops, one prompt at a time


def blocks(model):
    return model.transformer.h if hasattr(model, "transformer") else model.model.layers


def loop_profile(model, tokenizer, rows: list[dict]) -> None:
    """Every head's scores and category per prompt, from eager attention patterns."""
    from lmscope.core.heads import HeadReport, chance_scores, score_heads_with_evidence

    for row in rows:
        ids = tokenizer(row["prompt"], return_tensors="pt").input_ids
        with torch.no_grad():
            out = model(ids, output_attentions=True)
        pattern = torch.stack(out.attentions)[:, 0]  # (layers, heads, T, T)
        scores, evidence = score_heads_with_evidence(pattern, ids[0])
        HeadReport.from_scores(
            {k: v.tolist() for k, v in scores.items()},
            chance_scores(ids[0]),
            {k: v.tolist() for k, v in evidence.items()},
        )


def _hidden(args, kwargs):
    return args[0] if args else kwargs["hidden_states"]


def _replace(args, kwargs, value):
    if args:
        return (value, *args[1:]), kwargs
    return args, kwargs | {"hidden_states": value}


def loop_patch_atp(model, tokenizer, rows: list[dict], check: int = 10) -> None:
    """AtP of residual-stream patching (denoising, logit(answer) - logit(wrong)), then the `check`
    strongest cells patched exactly, one forward pass each."""
    for row in rows:
        _patch_atp_one(model, tokenizer, row, check)


def _patch_atp_one(model, tokenizer, row: dict, check: int) -> list[tuple]:
    """One prompt's AtP and its exact check: (cell, AtP, exact) of the strongest cells."""
    layers = blocks(model)
    clean = tokenizer(row["prompt"], return_tensors="pt").input_ids
    corrupt = tokenizer(row["corrupt"], return_tensors="pt").input_ids
    a, b = (tokenizer.encode(row[k], add_special_tokens=False)[0] for k in ("answer", "wrong"))

    def metric(logits):
        return logits[0, -1, a] - logits[0, -1, b]

    cache, acts = {}, {}

    def save(m, args, kwargs, i):
        cache[i] = _hidden(args, kwargs).detach()

    def keep(m, args, kwargs, i):
        hidden = _hidden(args, kwargs)
        hidden.retain_grad()
        acts[i] = hidden

    def patch(m, args, kwargs, layer, position):
        hidden = _hidden(args, kwargs).clone()
        hidden[:, position] = cache[layer][:, position]
        return _replace(args, kwargs, hidden)

    def hooked(fn):
        return [
            block.register_forward_pre_hook(partial(fn, i=i), with_kwargs=True)
            for i, block in enumerate(layers)
        ]

    handles = hooked(save)
    with torch.no_grad():
        m_clean = float(metric(model(clean).logits))
    for h in handles:
        h.remove()
    handles = hooked(keep)
    embeds = model.get_input_embeddings()(corrupt).detach().requires_grad_(True)
    value = metric(model(inputs_embeds=embeds).logits)
    value.backward()
    for h in handles:
        h.remove()
    m_corrupt = float(value.detach())
    atp = torch.stack(
        [((cache[i] - acts[i]) * acts[i].grad).sum(-1)[0] for i in range(len(layers))]
    ) / (m_clean - m_corrupt)
    checked = []
    for cell in atp.abs().flatten().argsort(descending=True)[:check].tolist():
        layer, position = divmod(cell, atp.shape[1])
        hook = partial(patch, layer=layer, position=position)
        handle = layers[layer].register_forward_pre_hook(hook, with_kwargs=True)
        with torch.no_grad():
            exact = (float(metric(model(corrupt).logits)) - m_corrupt) / (m_clean - m_corrupt)
        handle.remove()
        checked.append(([layer, position], float(atp[layer, position].detach()), exact))
    return checked


# -- the parts


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def engine_run(lm, rows: list[dict], experiment: str, settings: dict, folder: Path) -> float:
    from lmscope.runs import RunSpec, execute

    data = write_rows(folder / "data.jsonl", rows)
    out = tempfile.mkdtemp(dir=folder)
    spec = RunSpec(model=lm.model_id, data=data, experiment=experiment, out=out, settings=settings)
    start = time.perf_counter()
    store = execute(spec, lm=lm)
    seconds = time.perf_counter() - start
    assert store.manifest()["status"] == "complete", store.manifest()
    return seconds


def part_speed(args, folder: Path) -> None:
    """Engine and loop runs alternate (engine, loop, engine, loop, ...), so a busy machine's load
    falls on both alike; each rate is the median of `--repeat`."""
    lm, plain, tokenizer = load(args.model)
    rows = single_token_rows(tokenizer, args.prompts)
    print(f"{lm.card.name}: {len(rows)} IOI-style prompts for the engine; {torch.get_num_threads()} "
          f"torch threads; load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| experiment | prompts (engine / loop) | local engine (prompts/s) | plain loop (prompts/s) "
          "| engine / loop |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    experiments = (
        ("profile", {}, loop_profile, rows[: args.loop_profile]),
        ("patch --scan atp", {"scan": "atp"}, loop_patch_atp, rows[: args.loop]),
    )
    for name, settings, loop, loop_rows in experiments:
        experiment = name.split()[0]
        # patterns need eager attention; without them transformers' default (sdpa) is faster
        plain.set_attn_implementation("eager" if loop is loop_profile else "sdpa")
        engine_run(lm, rows[:8], experiment, settings, folder)  # warm-up
        loop(plain, tokenizer, loop_rows[:2])
        engine, plain_rates = [], []
        for _ in range(args.repeat):
            engine.append(len(rows) / engine_run(lm, rows, experiment, settings, folder))
            plain_rates.append(len(loop_rows) / timed(loop, plain, tokenizer, loop_rows))
        e, p = statistics.median(engine), statistics.median(plain_rates)
        print(f"| {name} | {len(rows)} / {len(loop_rows)} | {e:.2f} | {p:.2f} | {e / p:.1f}x |",
              flush=True)  # fmt: skip


def part_batching(args, folder: Path) -> None:
    """Prompts per second of the profile's batched pass (`analyze_batch`, no logit lens) at several
    batch sizes, and what length buckets cost against padding on the IOI-style data."""
    from lmscope.core.analysis import analyze_batch
    from lmscope.core.loading import from_model
    from lmscope.experiments.inputs import prompt_ids

    model, tokenizer = gpt2_small()
    lm = from_model(model, tokenizer, "gpt2-small-random")
    plain = gpt2_small()[0]
    rows = single_token_rows(tokenizer, args.prompts)
    tokens = [prompt_ids(lm, r["prompt"])[0] for r in rows]
    sizes = sorted({len(t) for t in tokens})
    same = [t for t in tokens if len(t) == sizes[0]]
    ids = torch.tensor([[t.id for t in same[0]]])
    with torch.inference_mode():
        bare = statistics.median(timed(plain, ids) for _ in range(args.repeat + 1))
    print(f"GPT-2 Small's shape, {len(same[0])}-token prompts; a bare transformers forward pass of "
          f"one prompt: {bare * 1000:.0f} ms; load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| prompts per pass | ms per pass | prompts/s |")
    print("|---:|---:|---:|")
    for batch in (1, 4, 16, 32):
        chunk = [("x", t, []) for t in (same * 32)[:batch]]
        analyze_batch(lm, chunk, lens=False)
        runs = [timed(analyze_batch, lm, chunk, lens=False) for _ in range(args.repeat)]
        seconds = statistics.median(runs)
        print(f"| {batch} | {seconds * 1000:.0f} | {batch / seconds:.1f} |", flush=True)
    counts = {s: sum(len(t) == s for t in tokens) for s in sizes}
    buckets = sum(-(-n // 32) for n in counts.values())
    ordered = sorted(len(t) for t in tokens)
    padded = sum(
        max(ordered[k : k + 32]) * len(ordered[k : k + 32]) for k in range(0, len(ordered), 32)
    )
    print(f"\n{len(tokens)} prompts, token counts {counts}: {buckets} bucketed passes of at most 32 "
          f"prompts (no padding) against {-(-len(tokens) // 32)} padded passes sorted by length, which "
          f"would compute {padded / sum(ordered) - 1:.1%} padding tokens")  # fmt: skip


def part_ray(args, folder: Path) -> None:
    from lmscope.runs import RunSpec, execute

    model, tokenizer = gpt2_small()
    saved = folder / "gpt2-small-random"
    model.save_pretrained(saved)
    tokenizer.save_pretrained(saved)
    rows = single_token_rows(tokenizer, args.prompts)
    print(f"GPT-2 Small's shape (random weights, a local folder), profile; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| engine | 20 prompts (s) | "
          f"{len(rows)} prompts (s) | fixed cost (s) | per prompt (ms) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    costs = {}
    for engine in ("local", "ray"):
        times = []
        for count in (20, len(rows)):
            data = write_rows(folder / f"data{count}.jsonl", rows[:count])
            runs = []
            for _ in range(args.repeat):
                out = tempfile.mkdtemp(dir=folder)
                spec = RunSpec(
                    model=str(saved), data=data, experiment="profile", out=out, engine=engine
                )
                runs.append(timed(execute, spec))
            times.append(statistics.median(runs))
        per = (times[1] - times[0]) / (len(rows) - 20)
        costs[engine] = per
        print(f"| {engine} | {times[0]:.1f} | {times[1]:.1f} | {times[0] - 20 * per:.1f} | "
              f"{per * 1000:.0f} |", flush=True)  # fmt: skip
    print(f"\nRay's per-prompt cost / local's: {costs['ray'] / costs['local']:.2f}")


def part_memory(args, folder: Path) -> None:
    print(f"GPT-2 Small's shape, local engine, each size in a fresh process; load average "
          f"{os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| experiment | prompts | seconds | peak resident memory (MB) |")
    print("|---|---:|---:|---:|")
    for experiment in args.experiments:
        for count in args.sizes:
            command = [sys.executable, __file__, "--part", "memory-child", "--prompts", str(count),
                       "--experiment", experiment]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            seconds, peak = done.stdout.split()
            print(
                f"| {experiment} | {count} | {float(seconds):.0f} | {int(peak) / 1024:.0f} |",
                flush=True,
            )


def part_memory_child(args, folder: Path) -> None:
    from lmscope.core.loading import from_model

    model, tokenizer = gpt2_small()
    lm = from_model(model, tokenizer, "gpt2-small-random")
    rows = single_token_rows(tokenizer, args.prompts)
    seconds = engine_run(lm, rows, args.experiment, {}, folder)
    print(f"{seconds:.1f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", required=True,
                        choices=("speed", "batching", "ray", "memory", "memory-child"))  # fmt: skip
    parser.add_argument("--model", choices=("gpt2-small", "smollm2"), default="gpt2-small")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--loop", type=int, default=20, help="prompts the patch loop runs")
    parser.add_argument(
        "--loop-profile", type=int, default=200, help="prompts the profile loop runs"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--experiment", default="profile", help="memory-child: what it runs")
    parser.add_argument("--experiments", nargs="+", default=["profile", "lens"],
                        help="memory: the experiments measured")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        os.environ.setdefault("LMSCOPE_RUNS_INDEX", str(Path(folder) / "runs.sqlite"))
        globals()[f"part_{args.part.replace('-', '_')}"](args, Path(folder))


if __name__ == "__main__":
    main()
