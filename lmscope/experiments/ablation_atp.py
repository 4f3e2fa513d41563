"""Attribution patching for the head-ablation scan: every head's zero or mean ablation estimated
from one forward and one backward pass, and the strongest ones checked by exact ablation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..core.budget import check_ablation_estimate
from ..core.errors import LmscopeError
from ..core.heads import head_name
from ..core.model import LoadedModel
from ..core.tokens import Token
from ..core.trace import run
from .ablation import (
    BATCH_TOKENS,
    AblationScan,
    Mode,
    ablation_scan,
    check_mode,
    replacements,
    scan_pass,
)
from .atp import Gradients, agreement, backward_rows, first_order, forward, strongest
from .inputs import Head, as_ids, check_count, choice, prompt_ids
from .metric import Metric, make_metric
from .patching import CHECK_TOP, in_layer_order, rounded_checks, rows_per_pass

Method = Literal["exact", "atp", "both"]
METHODS: tuple[Method, ...] = ("exact", "atp", "both")


@dataclass
class AblationEstimate:
    """Each head's ablation effect on the metric, `m(ablated) - m(prompt)`, `(layers, heads)`."""

    prompt: str
    notices: list[str]
    mode: Mode
    metric: Metric
    base_metric: float
    atp: torch.Tensor
    exact: torch.Tensor | None
    checked: list[dict]

    def agreement(self, k: int = CHECK_TOP) -> dict | None:
        return None if self.exact is None else agreement(self.atp, self.exact, k)

    def to_dict(self) -> dict:
        return {
            "method": "atp" if self.exact is None else "both",
            "prompt": self.prompt,
            "notices": self.notices,
            "mode": self.mode,
            "metric": self.metric.to_dict(),
            "base_metric": round(self.base_metric, 6),
            "atp": self.atp.round(decimals=6).tolist(),
            "exact": None if self.exact is None else self.exact.round(decimals=6).tolist(),
            "checked": rounded_checks(self.checked),
            "agreement": self.agreement(),
        }


def exact_ablation(
    lm: LoadedModel,
    ids: torch.Tensor,
    metric: Metric,
    values: torch.Tensor,
    heads: list[Head],
    batch_tokens: int = BATCH_TOKENS,
) -> tuple[float, torch.Tensor]:
    """The metric of the prompt, and its change with each of `heads` ablated alone (in order)."""
    base: list[float] = []

    def measure(chunk: list[Head]) -> torch.Tensor:
        rows = metric(scan_pass(lm, ids, chunk, values))
        base.append(float(rows[0]))
        return rows[1:] - rows[0]

    with torch.inference_mode():
        effects = in_layer_order(heads, rows_per_pass(lm, ids.shape[1], batch_tokens), measure)
        if not base:
            base.append(float(metric(run(lm, ids, capture=False)[0][0, -1])))
    return base[0], effects


def ablation_estimate(
    lm: LoadedModel,
    prompt: object,
    mode: object = "zero",
    answer: object = None,
    wrong: object = None,
    *,
    exact: bool = False,
    check: int = CHECK_TOP,
) -> AblationEstimate:
    """AtP of the head-ablation scan: `grad_z(metric) . (replacement - z)` for every head at once;
    with `exact` the full exact scan beside it, and the `check` strongest heads ablated exactly."""
    mode = check_mode(mode)
    check = check_count(check)
    tokens, notices = prompt_ids(lm, prompt)
    check_ablation_estimate(lm, len(tokens), exact, check)
    (made,) = ablation_estimates(lm, [(prompt, tokens, notices)], [(answer, wrong)], mode,
                                 exact=exact, check=check)  # fmt: skip
    if isinstance(made, LmscopeError):
        raise made
    return made


def ablation_estimates(
    lm: LoadedModel,
    prompts: list[tuple[str, list[Token], list[str]]],
    targets: list[tuple[object, object]],
    mode: Mode,
    *,
    exact: bool = False,
    check: int = CHECK_TOP,
) -> list[AblationEstimate | LmscopeError]:
    """`ablation_estimate` of prompts of one token count, (prompt, tokens, notices) each, with
    one forward and one backward pass for them all; `targets` holds each one's (answer, wrong).
    A prompt whose target is refused comes back as that error."""
    ids = torch.cat([as_ids(tokens) for _, tokens, _ in prompts])
    tape = forward(lm, ids, "heads")  # its logits pick the metrics: no other pass of the prompts
    metrics: list[tuple[Metric, list[str]] | LmscopeError] = []
    for row, (answer, wrong) in enumerate(targets):
        try:
            metrics.append(make_metric(lm, answer, wrong, tape.logits[row].detach().float()))
        except LmscopeError as error:
            metrics.append(error)
    grads = backward_rows(lm, tape, [m[0] if isinstance(m, tuple) else None for m in metrics])
    made: list[AblationEstimate | LmscopeError] = []
    for row, ((prompt, _, notices), target, grad) in enumerate(
        zip(prompts, metrics, grads, strict=True)
    ):
        if isinstance(target, LmscopeError):
            made.append(target)
            continue
        metric, more = target
        assert grad is not None  # every row with a metric has its gradient
        one = ids[row : row + 1]
        made.append(_estimate(lm, prompt, notices + more, one, metric, grad, mode, exact, check))
    return made


def _estimate(
    lm: LoadedModel,
    prompt: str,
    notices: list[str],
    ids: torch.Tensor,
    metric: Metric,
    grad: Gradients,
    mode: Mode,
    exact: bool,
    check: int,
) -> AblationEstimate:
    """One prompt's estimate from its gradient, and the exact ablations asked for."""
    values = replacements(lm, mode, grad.values)  # (layers, heads, d_head)
    atp = first_order(grad, values.unsqueeze(1).expand_as(grad.values), "heads")
    all_heads = [(layer, head) for layer in range(lm.layers) for head in range(lm.heads)]
    full = exact_ablation(lm, ids, metric, values, all_heads)[1] if exact else None
    top = strongest(atp, check)
    if full is not None:  # the full scan has measured them already
        measured = [full[layer * lm.heads + head] for layer, head in top]
    else:
        measured = exact_ablation(lm, ids, metric, values, top)[1] if top else []
    checked = [
        {"head": [layer, head], "name": head_name(layer, head), "atp": float(atp[layer, head]),
         "exact": float(v)}
        for (layer, head), v in zip(top, measured, strict=True)
    ]  # fmt: skip
    return AblationEstimate(
        prompt=prompt,
        notices=notices,
        mode=mode,
        metric=metric,
        base_metric=grad.metric,
        atp=atp,
        exact=None if full is None else full.reshape(lm.layers, lm.heads),
        checked=checked,
    )


def head_scan(
    lm: LoadedModel,
    prompt: object,
    mode: object = "zero",
    target: object = None,
    wrong: object = None,
    *,
    method: object = "atp",
    check: object = CHECK_TOP,
) -> AblationScan | AblationEstimate:
    """The head-ablation scan by `method`: 'exact' (every head removed alone, batched), 'atp' (the
    estimate, its `check` strongest heads ablated exactly) or 'both' (and their agreement)."""
    method = choice("method", method, METHODS)
    if method == "exact":
        return ablation_scan(lm, prompt, mode, target=target, wrong=wrong)  # type: ignore[arg-type]
    return ablation_estimate(lm, prompt, mode, target, wrong, exact=method == "both", check=check)
