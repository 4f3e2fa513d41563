"""Attribution patching (AtP): a first-order estimate of every patching or ablation cell at once.

Patching one activation `a` from its value in the base run to `a'` changes the metric by about
`grad_a(metric) . (a' - a)` (Nanda 2023; Kramar et al. 2024). One forward pass of each prompt and
one backward pass of the base run give that estimate for every cell of a heatmap; `agreement` says
how well it ranks the cells the exact scan measured (Spearman's rank correlation, top-k overlap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..core.model import LoadedModel
from ..core.trace import Recorder, pass_slot, recording, run
from .metric import Metric

Component = Literal["resid", "attn", "mlp", "heads"]
COMPONENTS: tuple[Component, ...] = ("resid", "attn", "mlp", "heads")
# The activation each component patches, by trace.py's names.
HOOKS: dict[Component, str] = {
    "resid": "hook_resid_pre",
    "attn": "hook_attn_out",
    "mlp": "hook_mlp_out",
    "heads": "attn.hook_z",
}


def captured(lm: LoadedModel, rec: Recorder, component: Component, row: int = 0) -> torch.Tensor:
    """One row's activations of `component` from a recorded pass: `(layers, T, d)`, or
    `(layers, T, heads, d_head)` for heads; a copy outside the pass's inference mode."""
    acts = torch.stack(  # each layer's from its device (a device map spreads them)
        [
            rec.acts[f"blocks.{layer}.{HOOKS[component]}"][row].to(lm.device)
            for layer in range(lm.layers)
        ]
    )
    acts = acts.float().clone()
    return acts.unflatten(-1, (lm.heads, -1)) if component == "heads" else acts


def activations(lm: LoadedModel, ids: torch.Tensor, component: Component) -> torch.Tensor:
    """One run's activations of `component` (shapes as `captured`), with no gradient."""
    with torch.inference_mode():
        _, rec = run(lm, ids, keep_keys=False)
    return captured(lm, rec, component)


@dataclass
class Tape:
    """A forward pass of a batch of prompts kept for one backward pass: the last position's logits
    `(B, vocab)` and each layer's activation of `component`, both still in the autograd graph."""

    component: Component
    logits: torch.Tensor  # (B, vocab)
    acts: list[torch.Tensor]


@dataclass
class Gradients:
    """The base run's metric and its gradient at each layer's activation (shapes as `activations`)."""

    metric: float
    values: torch.Tensor
    grads: torch.Tensor


def forward(lm: LoadedModel, ids: torch.Tensor, component: Component) -> Tape:
    """One forward pass of `ids` `(B, T)` that a backward pass can follow: its logits give the
    metric, so no other pass of these prompts is needed.

    The recorder keeps the very tensors the model computes with (no stacking copies), so autograd
    reaches each of them; the input embeddings are the leaf that makes the pass differentiable.
    """
    names = [f"blocks.{layer}.{HOOKS[component]}" for layer in range(lm.layers)]
    embedding = lm.model.get_submodule(lm.adapter.token_embedding)
    recorder = Recorder(capture=True, keep_keys=False)
    with torch.inference_mode(False), torch.enable_grad():
        embeds = embedding(ids.to(lm.device)).detach().requires_grad_(True)
        with pass_slot(), recording(recorder):
            out = lm.model(inputs_embeds=embeds, logits_to_keep=1)
    return Tape(component, out.logits[:, -1], [recorder.acts[name] for name in names])


def backward(lm: LoadedModel, tape: Tape, metric: Metric) -> Gradients:
    """One backward pass from the metric of `tape`'s logits (one prompt) to each layer's activation."""
    grad = backward_rows(lm, tape, [metric])[0]
    assert grad is not None
    return grad


def backward_rows(
    lm: LoadedModel, tape: Tape, metrics: list[Metric | None]
) -> list[Gradients | None]:
    """One backward pass for a batch: row b's metric `metrics[b]` to its own activations (None:
    row b is left out). Rows never mix in a forward pass, so the gradient of the sum of the
    rows' metrics is, at each row, that row's own gradient.

    In half precision the pass runs in the model's dtype (its gradients carry that dtype's
    rounding), and the metric (from float32 logits) and everything after it, the products with
    activation differences and their sums (`first_order`), are float32."""
    rows = [row for row, m in enumerate(metrics) if m is not None]
    if not rows:
        return [None] * len(metrics)
    with torch.inference_mode(False), torch.enable_grad():
        values = torch.stack([metrics[row](tape.logits[row]) for row in rows])
        grads = torch.autograd.grad(values.sum(), tape.acts, allow_unused=True)
    if any(g is None for g in grads):
        raise NotImplementedError(
            f"{lm.card.name}: no gradient reaches {tape.component} activations"
        )
    acts = torch.stack([a.detach().float().to(lm.device) for a in tape.acts], 1)  # (B, layers, ...)
    grads = torch.stack([g.float().to(lm.device) for g in grads], 1)
    if tape.component == "heads":
        acts, grads = (t.unflatten(-1, (lm.heads, -1)) for t in (acts, grads))
    out: list[Gradients | None] = [None] * len(metrics)
    for row, value in zip(rows, values.detach(), strict=True):
        out[row] = Gradients(float(value), acts[row], grads[row])
    return out


def gradients(
    lm: LoadedModel, ids: torch.Tensor, metric: Metric, component: Component
) -> Gradients:
    """One forward pass of `ids` `(1, T)` and one backward pass from the metric at its last position."""
    return backward(lm, forward(lm, ids, component), metric)


def first_order(grad: Gradients, target: torch.Tensor, component: Component) -> torch.Tensor:
    """The estimated metric change of moving each cell from the base run to `target` (same shape):
    `(layers, T)` for positions, `(layers, heads)` for heads (each head over all positions)."""
    change = grad.grads * (target - grad.values)
    return change.sum((1, 3)) if component == "heads" else change.sum(-1)


def ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 of the flattened `x`, ties given their average rank (on the CPU: a heatmap's
    cells, a few thousand values at most)."""
    x = x.flatten().double().cpu()
    order = torch.empty_like(x)
    order[x.argsort()] = torch.arange(len(x), dtype=torch.double)
    _, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(counts), dtype=torch.double).index_add_(0, inverse, order)
    return (sums / counts)[inverse]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Spearman's rank correlation of two same-shaped tensors (None if either is constant)."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denominator if denominator > 0 else None


def strongest(effect: torch.Tensor, k: int) -> list[tuple[int, int]]:
    """The `k` cells of a `(rows, columns)` effect with the largest magnitude, strongest first."""
    flat = effect.abs().flatten()
    top = flat.argsort(descending=True, stable=True)[: min(k, len(flat))]
    columns = effect.shape[1]
    return [(int(i) // columns, int(i) % columns) for i in top]


def agreement(estimate: torch.Tensor, exact: torch.Tensor, k: int = 10) -> dict:
    """How well `estimate` ranks the cells of `exact` (both effects: 0 = no change)."""
    top_estimate, top_exact = set(strongest(estimate, k)), set(strongest(exact, k))
    k = len(top_exact)
    rho = spearman(estimate, exact)
    return {
        "spearman": None if rho is None else round(rho, 6),
        "top_k": k,
        "top_k_overlap": len(top_estimate & top_exact),
    }


def scan_agreement(exact: dict | None, estimate: dict | None, k: int = 10) -> dict | None:
    """AtP against the exact head-ablation scan, from their `to_dict()` documents: their
    `agreement`, when both measured the same thing (the same ablation mode and metric), else
    None."""
    if not exact or not estimate or exact.get("mode") != estimate.get("mode"):
        return None
    keys = ("label", "answer", "wrong")
    if any(exact["metric"][key] != estimate["metric"][key] for key in keys):
        return None
    return agreement(torch.tensor(estimate["atp"]), torch.tensor(exact["effect"]), k)
