"""Head ablation: remove heads and see what the model predicts and writes without them.

A removed head's output z (before the output projection) is replaced at every position: by zeros
(zero ablation), or by its mean over the prompt's positions in the clean run (mean ablation, which
keeps the head's average contribution and removes only what depends on the input). Everything goes
through `trace.run`'s per-request `HeadPatch`, so the shared model is never changed.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import torch

from ..core import jobs
from ..core.analysis import Prediction, top_predictions
from ..core.budget import check_ablation, check_scan
from ..core.errors import RequestError
from ..core.heads import head_name
from ..core.model import LoadedModel
from ..core.tokens import Token
from ..core.trace import HeadPatch, run
from .generation import Generation, GenerationSettings, generate
from .inputs import Head, as_ids, check_heads, prompt_ids
from .metric import Metric, make_metric

Mode = Literal["zero", "mean"]
MODES: tuple[Mode, ...] = ("zero", "mean")
TOP_K = 10
BATCH_TOKENS = 8192  # rows x tokens per batched forward pass in the scan (bounds its memory)
PATTERN_FLOATS = 1 << 26  # and rows x heads x T x T, its attention patterns (256 MB)


def check_mode(mode: object) -> Mode:
    if mode not in MODES:
        raise RequestError(f"'mode' must be 'zero' or 'mean', got {mode!r}.")
    return mode  # type: ignore[return-value]


def clean_run(
    lm: LoadedModel, ids: torch.Tensor, mode: Mode
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Last-position logits `(vocab,)`, unablated, and (for mean ablation, which needs them)
    every head's z `(layers, T, heads, d_head)`."""
    logits, rec = run(lm, ids, capture=mode == "mean")
    if mode != "mean":
        return logits[0, -1].float(), None
    z = rec.stack("attn.hook_z", lm.layers)[:, 0].unflatten(-1, (lm.heads, -1))
    return logits[0, -1].float(), z


def replacements(lm: LoadedModel, mode: Mode, z: torch.Tensor | None) -> torch.Tensor:
    """What an ablated head outputs, per layer: `(layers, heads, d_head)`, zeros or the clean mean."""
    if mode == "mean":
        if z is None:
            raise ValueError("mean ablation needs the clean run's z")
        return z.mean(dim=1)
    return lm.zeros(lm.layers, lm.heads, lm.card.head_size)


def head_patches(
    lm: LoadedModel, heads: list[Head], mode: Mode = "zero", z: torch.Tensor | None = None
) -> dict[int, HeadPatch]:
    """One `HeadPatch` per touched layer removing `heads`; `z` (clean run) is needed for 'mean'."""
    values = replacements(lm, mode, z)
    keep = torch.ones(lm.layers, lm.heads, device=lm.device)
    for layer, head in heads:
        keep[layer, head] = 0
    touched = sorted({layer for layer, _ in heads})
    return {layer: HeadPatch(keep[layer], values[layer]) for layer in touched}


def kl_divergence(clean: torch.Tensor, ablated: torch.Tensor) -> float:
    """KL(clean || ablated) in nats: sum_v p(v) (log p(v) - log q(v)), from logits."""
    p_log, q_log = clean.log_softmax(-1), ablated.log_softmax(-1)
    return float((p_log.exp() * (p_log - q_log)).sum())


class Compared:
    """What an intervention's result shares (ablation, steering): the last-position logits
    `before` and `after` it `(vocab,)`, the model `lm`, and the greedy continuations
    `generation_before` / `generation_after` (None when not asked for)."""

    def top(self, which: Literal["before", "after"], k: int = TOP_K) -> list[Prediction]:
        logits = self.before if which == "before" else self.after
        return top_predictions(self.lm, logits.unsqueeze(0), k)[0]

    @property
    def kl(self) -> float:
        return kl_divergence(self.before, self.after)

    def compared(self) -> dict:
        """KL divergence, the top tokens before and after, and both continuations, as JSON."""
        before, after = self.generation_before, self.generation_after
        return {
            "kl_divergence": significant(self.kl),
            "before": [p.to_dict() for p in self.top("before")],
            "after": [p.to_dict() for p in self.top("after")],
            "generation_before": before.to_dict() if before else None,
            "generation_after": after.to_dict() if after else None,
        }


@dataclass
class Ablation(Compared):
    """The next-token distribution and the continuation, with and without some heads."""

    lm: LoadedModel
    prompt: str
    tokens: list[Token]
    notices: list[str]
    heads: list[Head]
    mode: Mode
    target: int
    target_text: str
    before: torch.Tensor  # logits (vocab,)
    after: torch.Tensor
    generation_before: Generation | None
    generation_after: Generation | None
    metric: Metric | None = None  # what "effect" means; the target's log p when None

    @property
    def target_probability(self) -> tuple[float, float]:
        """The target token's probability before and after."""
        return (
            float(self.before.softmax(-1)[self.target]),
            float(self.after.softmax(-1)[self.target]),
        )

    @property
    def metric_values(self) -> tuple[float, float]:
        """The metric before and after (log p(target) unless a wrong token was given)."""
        metric = self.metric or Metric(self.target, self.target_text)
        return float(metric(self.before)), float(metric(self.after))

    def to_dict(self) -> dict:
        p_before, p_after = self.target_probability
        m_before, m_after = self.metric_values
        metric = self.metric or Metric(self.target, self.target_text)
        return {
            "prompt": self.prompt,
            "notices": self.notices,
            "metric": metric.to_dict()
            | {
                "before": round(m_before, 6),
                "after": round(m_after, 6),
                "change": round(m_after - m_before, 6),
            },
            "heads": [[layer, head] for layer, head in self.heads],
            "head_names": [head_name(layer, head) for layer, head in self.heads],
            "mode": self.mode,
            "target": {
                "id": self.target,
                "text": self.target_text,
                "display": self.lm.token_display(self.target),
                "probability_before": significant(p_before),
                "probability_after": significant(p_after),
                "probability_change": significant(p_after - p_before),
                "logprob_change": significant(math.log(p_after) - math.log(p_before))
                if p_after > 0 and p_before > 0
                else None,
            },
            **self.compared(),
        }


def ablate(
    lm: LoadedModel,
    prompt: str,
    heads: object,
    mode: object = "zero",
    *,
    target: object = None,
    wrong: object = None,
    new_tokens: int = 10,
) -> Ablation:
    """Remove `heads` ([(layer, head), ...]); compare the next token and a greedy continuation.

    `target` (default: the clean top prediction) is the token whose probability change is reported;
    the metric is its log-probability, or logit(target) - logit(wrong) with `wrong`.
    """
    mode = check_mode(mode)
    heads = check_heads(lm, heads)
    settings = GenerationSettings(max_new_tokens=new_tokens) if new_tokens else None
    tokens, notices = prompt_ids(lm, prompt, reserve=new_tokens)
    check_ablation(lm, len(tokens), new_tokens)
    ids = as_ids(tokens)
    with torch.inference_mode():
        before, z = clean_run(lm, ids, mode)
        patches = head_patches(lm, heads, mode, z)
        after, _ = run(lm, ids, capture=False, patches=patches)
    metric, targets = make_metric(lm, target, wrong, before)
    return Ablation(
        lm=lm,
        prompt=prompt,
        tokens=tokens,
        notices=notices + targets,
        heads=heads,
        mode=mode,
        target=metric.answer,
        target_text=metric.answer_text,
        metric=metric,
        before=before,
        after=after[0, -1].float(),
        generation_before=generate(lm, prompt, settings) if settings else None,
        generation_after=generate(lm, prompt, settings, patches=patches) if settings else None,
    )


@dataclass
class AblationScan:
    """The effect of removing each head alone on the metric, [layer][head]: the target's
    log-probability, or logit(target) - logit(wrong) when `metric` is contrastive."""

    prompt: str
    notices: list[str]
    mode: Mode
    target: int
    target_text: str
    clean_logprob: float  # log p(target), whatever the metric
    ablated_logprob: torch.Tensor  # (layers, heads)
    metric: Metric | None = None
    clean_metric: float | None = None  # the metric's value, when contrastive
    ablated_metric: torch.Tensor | None = None

    @property
    def effect(self) -> torch.Tensor:
        """metric_ablated - metric_clean: negative = the head helped the target (over `wrong`)."""
        if self.ablated_metric is not None and self.clean_metric is not None:
            return self.ablated_metric - self.clean_metric
        return self.ablated_logprob - self.clean_logprob

    def to_dict(self) -> dict:
        metric = self.metric or Metric(self.target, self.target_text)
        clean = self.clean_metric if self.clean_metric is not None else self.clean_logprob
        return {
            "method": "exact",
            "prompt": self.prompt,
            "notices": self.notices,
            "mode": self.mode,
            "target": {"id": self.target, "text": self.target_text},
            "metric": metric.to_dict() | {"clean": round(clean, 6)},
            "clean_logprob": round(self.clean_logprob, 6),
            "effect": self.effect.round(decimals=6).tolist(),
            "ablated_logprob": self.ablated_logprob.round(decimals=6).tolist(),
        }


def scan_passes(lm: LoadedModel, tokens: int, batch_tokens: int = BATCH_TOKENS) -> list[list[Head]]:
    """Every head, in layer order, cut into runs of heads that share one batched forward pass.

    A pass holds one clean row plus one row per head, so it is bounded by `batch_tokens` and by
    the size of its attention patterns (rows x heads x T x T floats).
    """
    rows = min(batch_tokens // tokens, PATTERN_FLOATS // (lm.heads * tokens * tokens))
    size = max(1, rows - 1)  # heads per pass, beside the clean row
    heads = [(layer, head) for layer in range(lm.layers) for head in range(lm.heads)]
    return [heads[start : start + size] for start in range(0, len(heads), size)]


def scan_pass(
    lm: LoadedModel, ids: torch.Tensor, heads: list[Head], values: torch.Tensor
) -> torch.Tensor:
    """Last-position logits `(1 + len(heads), vocab)`: row 0 clean, row 1 + i without `heads[i]`.

    The pass starts as the clean prompt alone; entering each layer l, it gains one copy of the
    clean stream per head of l to remove (`trace.run(grow=...)`), and that head is removed in its
    copy only. Removing a head of layer l leaves layers < l unchanged, so each copy runs only
    layers l.. and the clean row runs once: the least work an exact scan can do
    (12 + 12 x 78 layer-rows for GPT-2 Small), in large matrix products.
    """
    grow = Counter(layer for layer, _ in heads)
    patches, rows = {}, 1
    for layer, count in sorted(grow.items()):
        rows += count
        keep = torch.ones(rows, lm.heads, device=lm.device)
        for row, (_, head) in enumerate(h for h in heads if h[0] == layer):
            keep[rows - count + row, head] = 0
        patches[layer] = HeadPatch(keep, values[layer])
    logits, _ = run(lm, ids, capture=False, patches=patches, grow=dict(grow))
    return logits[:, -1].float()


def ablation_scan(
    lm: LoadedModel,
    prompt: str,
    mode: object = "zero",
    *,
    target: object = None,
    wrong: object = None,
    batch_tokens: int = BATCH_TOKENS,
) -> AblationScan:
    """Ablate every head alone, all heads of the model in a few batched forward passes
    (one for GPT-2 Small at up to 56 tokens; see `scan_pass`). Only the last position is unembedded.
    """
    mode = check_mode(mode)
    tokens, notices = prompt_ids(lm, prompt)
    check_scan(lm, len(tokens), mean=mode == "mean")
    ids = as_ids(tokens)
    with torch.inference_mode():
        z = clean_run(lm, ids, mode)[1] if mode == "mean" else None  # mean ablation needs z
        values = replacements(lm, mode, z)
        plan, passes = scan_passes(lm, ids.shape[1], batch_tokens), []
        for done, heads in enumerate(plan):
            jobs.report(done, len(plan))  # progress, and a cancel point between passes
            passes.append(scan_pass(lm, ids, heads, values))
    clean = passes[0][0]
    metric, targets = make_metric(lm, target, wrong, clean)
    ablated = torch.cat([logits[1:] for logits in passes])
    logprobs = ablated.log_softmax(-1)[:, metric.answer]
    contrastive = metric.contrastive
    return AblationScan(
        prompt=prompt,
        notices=notices + targets,
        mode=mode,
        target=metric.answer,
        target_text=metric.answer_text,
        clean_logprob=float(clean.log_softmax(-1)[metric.answer]),
        ablated_logprob=logprobs.reshape(lm.layers, lm.heads),
        metric=metric,
        clean_metric=float(metric(clean)) if contrastive else None,
        ablated_metric=metric(ablated).reshape(lm.layers, lm.heads) if contrastive else None,
    )


def significant(x: float, digits: int = 6) -> float:
    """`x` to `digits` significant digits: 7.03e-05 stays 7.03e-05 (6 decimals made it 7e-05)."""
    return float(f"{x:.{digits}g}")


SMALL_EFFECT = 0.1  # |log p_after - log p_before| below this (about 10%) counts as barely moved


def barely_moved(p_before: float, p_after: float) -> bool:
    """Whether the target's probability changed by less than `SMALL_EFFECT` in log terms (a
    change to or from zero always counts)."""
    if p_before <= 0 or p_after <= 0:
        return False
    return abs(math.log(p_after) - math.log(p_before)) < SMALL_EFFECT
