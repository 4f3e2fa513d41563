"""Attribution: which heads, MLPs and input tokens pushed the model toward a target token.

Direct logit attribution (DLA) splits the target's logit at the last position into what each
component wrote into the residual stream. Token attribution scores each input token by integrated
gradients and by gradient x input on its token embedding; integrated gradients refine their path
until the scores settle, and say so when they do not (see `token_attribution`).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import nn

from ..core import jobs
from ..core.analysis import Analysis
from ..core.budget import check_token_attribution
from ..core.devices import tolerance
from ..core.errors import RequestError, UnsupportedModelError
from ..core.model import LoadedModel, soft_cap
from ..core.norms import freeze, is_norm
from ..core.tokens import Token
from ..core.trace import run
from .inputs import as_ids, prompt_ids
from .metric import Metric, make_metric

DEFAULT_STEPS = 512  # the most path points one attribution may evaluate (it stops earlier)
FIRST_PANELS = 8  # Simpson panels of the first, uniform rule, each halved once (33 points)
MIN_STEPS = 5  # one panel, halved once
MAX_STEPS = 4096
COMPLETENESS = 0.05  # |sum of IG - (f(input) - f(baseline))| / |f(input) - f(baseline)| allowed
TOKEN_TOLERANCE = 0.02  # per-token error estimate allowed, times max(|f(x) - f(b)|, 1)
# A halved panel's error estimate: |S2 - S1| / 15, Richardson's for Simpson's rule, half to each
# half (before: |S2 - S1|, the error of the coarser S1, 10-50x what was measured against a tight
# reference: benchmarks/results/attribution.md)
ERROR_SHARE = 1 / 30
# Refinement goes on until the scores add up within this share (the exact check that catches a
# step of f that Richardson's estimate misses); a result counts as complete within COMPLETENESS
COMPLETENESS_AIM = 0.02
BATCH_TOKENS = 4096  # tokens per batched forward/backward pass of integrated gradients
BATCH_CELLS = 2**20  # rows x T^2 attention cells kept for the backward pass (bounds memory)


def unembedding_column(
    lm: LoadedModel, target: int
) -> tuple[nn.Module | None, torch.Tensor, float]:
    """The final norm (if any), and the target's unembedding column u `(d,)` with its bias c: the
    linear map after the norm gives `logit = u . y + c` for the normalized stream y."""
    modules = [m for p in lm.adapter.unembed if (m := lm.adapter.submodule(lm.model, p))]
    norm = modules.pop(0) if modules and is_norm(modules[0]) else None
    if not all(isinstance(m, nn.Linear) for m in modules):
        raise UnsupportedModelError(
            f"Reading a logit off the stream needs a linear unembedding; {lm.card.name} has "
            f"{', '.join(type(m).__name__ for m in modules)}."
        )
    width = modules[0].in_features
    with torch.inference_mode(False), torch.enable_grad():
        y = lm.zeros(width).requires_grad_(True)
        out = y
        for module in modules:
            out = module(out)
        (u,) = torch.autograd.grad(out[target], y)
    bias = float(out[target].detach())  # the unembedding's own bias (0 in every family so far)
    return norm, u.float().to(lm.device), bias


def readout(lm: LoadedModel, final: torch.Tensor, target: int) -> tuple[torch.Tensor, float]:
    """The target logit as a linear function of the residual stream, the final norm's scale and
    any logit soft-cap frozen.

    Returns `(g, c)` with `logit(x) = g . x + c` exactly at `x = final` (the full last-position
    residual) and, for any split `x = sum_i x_i`, `g . x_i` is component i's direct effect.
    With u = the unembedding column of the target (through any linear projection after the norm)
    and the norm frozen at `final` (core/norms.py: gain w, or 1 + w for Gemma, scale s): g = w*u / s,
    centred for LayerNorm, c = b . u + the unembedding's bias. A model that soft-caps its logits
    (Gemma 2: `cap * tanh(l / cap)`) has the cap frozen the same way, as the ratio r =
    capped(l) / l at the full logit l: g and c are multiplied by r.
    """
    norm, u, c = unembedding_column(lm, target)
    final = final.float()
    u = u.to(final.device)
    g = u
    if norm is not None:
        frozen = freeze(norm, final)
        g, c = frozen.transpose(u), c + frozen.constant(u)
    cap = lm.card.final_softcap
    if cap is not None:
        raw = float(g @ final) + c
        ratio = float(soft_cap(torch.tensor(raw), cap)) / raw if raw else 1.0
        g, c = g * ratio, c * ratio
    return g, c


def head_writes(lm: LoadedModel, z: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What each head of `layer` wrote: out_proj(z, other heads zeroed) - out_proj(0), and the bias.

    z: `(heads, d_head)` at one position. Returns `(heads, d)` and the out_proj bias `(d,)`. Where
    a norm follows the sublayer (Gemma, OLMo 2), both pass through it frozen at the layer's whole
    output out_proj(z) (core/norms.py): they sum to what the layer added to the stream.
    """
    block = lm.adapter.block_list(lm.model)[layer]
    out_proj = block.get_submodule(lm.adapter.out_proj)
    heads = z.shape[0]
    z = z.to(lm.dtype)
    alone = z.new_zeros(heads, heads, z.shape[1])
    alone[range(heads), range(heads)] = z
    bias = out_proj(z.new_zeros(1, z.numel()))[0].float().to(z.device)
    writes = out_proj(alone.flatten(1)).float().to(z.device) - bias
    if lm.adapter.attn_out_norm is None:
        return writes, bias
    whole = out_proj(z.reshape(1, -1))[0].to(z.device)
    frozen = freeze(block.get_submodule(lm.adapter.attn_out_norm), whole)
    return frozen.linear(writes), frozen.linear(bias) + (0 if frozen.bias is None else frozen.bias)


@dataclass
class DirectLogitAttribution:
    """The target's logit (or, with a `wrong` token, logit(target) - logit(wrong)) split by
    component: heads [layer][head], MLPs and attention biases per layer, embeddings, and the
    constant (final norm bias + unembedding bias). They sum to `logit`.
    """

    target: int
    target_text: str
    logit: float  # the value split: the target's logit, or the logit difference
    heads: torch.Tensor  # (layers, heads)
    attention_bias: torch.Tensor  # (layers,)
    mlps: torch.Tensor  # (layers,)
    embeddings: float
    constant: float
    metric: Metric | None = None
    notices: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """What is split: `logit(' Paris')` or `logit(' Mary') - logit(' John')`."""
        if self.metric is not None and self.metric.contrastive:
            return self.metric.label
        return f"logit({self.target_text!r})"

    METHOD = (
        "Each head's output z at the last position is pushed through its layer's output projection "
        "alone (other heads zeroed, projection bias removed). Every norm a contribution passes "
        "through is linearized the same way, its scale frozen at its value on the whole it really "
        "normalized (divide by that scale, centre for LayerNorm, multiply by the norm's gain: w, "
        "or 1 + w in Gemma): the norm after an attention sublayer (Gemma, OLMo 2), frozen at the "
        "layer's whole output, and the final norm, frozen at the full residual stream. Where the "
        "model soft-caps its logits (Gemma 2), the cap is frozen too, as the ratio capped / "
        "uncapped at the full logit. Each component is then dotted with the target's unembedding "
        "column. Within this linearization the components sum to the target's logit exactly. For "
        "logit(A) - logit(B), each component's value is its value for A minus its value for B "
        "(the readout is linear), and they sum to the logit difference."
    )

    @property
    def total(self) -> float:
        parts = self.heads.sum() + self.attention_bias.sum() + self.mlps.sum()
        return float(parts) + self.embeddings + self.constant

    def to_dict(self) -> dict:
        return {
            "target": {"id": self.target, "text": self.target_text},
            "metric": self.metric.to_dict() if self.metric is not None else None,
            "attributes": self.label,
            "notices": list(self.notices),
            "logit": round(self.logit, 5),
            "heads": self.heads.round(decimals=5).tolist(),
            "attention_bias": self.attention_bias.round(decimals=5).tolist(),
            "mlps": self.mlps.round(decimals=5).tolist(),
            "embeddings": round(self.embeddings, 5),
            "constant": round(self.constant, 5),
            "method": self.METHOD,
        }


def direct_logit_attribution(
    analysis: Analysis, target: object = None, wrong: object = None
) -> DirectLogitAttribution:
    """Split the target's last-position logit (default: the top prediction) by component, or with
    `wrong` the logit difference logit(target) - logit(wrong) (the difference of the two splits).

    Needs a model whose residual stream is the sum of the embeddings and every sublayer's
    output (norms after a sublayer, as in Gemma and OLMo 2, are part of what the sublayer adds);
    a model that normalizes the stream itself between layers (OPT-350m's post-LN) is refused.
    """
    lm = analysis.lm
    metric, notices = make_metric(lm, target, wrong, analysis.logits)
    final = analysis.residual[-1, -1].float()
    embeddings = analysis.residual[0, -1].float()
    attn = analysis.attn_out[:, -1].float().sum(0)
    summed = embeddings + attn + analysis.mlp_last.float().sum(0)
    # In half precision the stream was rounded after every sublayer: the dtype's tolerance.
    close = max(1e-3, tolerance(lm.dtype))
    if not torch.allclose(summed, final, rtol=close, atol=close * float(final.abs().max())):
        raise UnsupportedModelError(
            f"{lm.card.name} normalizes its residual stream itself between layers (post-LN), so "
            "the final stream is not a sum of component outputs: direct logit attribution does "
            "not apply."
        )
    with torch.inference_mode():
        g, constant = readout(lm, final, metric.answer)
        if metric.wrong is not None:  # the readout is linear: the split of A minus that of B
            g_wrong, c_wrong = readout(lm, final, metric.wrong)
            g, constant = g - g_wrong, constant - c_wrong
        writes = [head_writes(lm, analysis.z[layer, -1], layer) for layer in range(lm.layers)]
        heads = torch.stack([w.to(g.device) for w, _ in writes]) @ g
        biases = torch.stack([b.to(g.device) for _, b in writes]) @ g
        mlps = analysis.mlp_last.float().to(g.device) @ g
    logit = float(analysis.logits[metric.answer])
    if metric.wrong is not None:
        logit -= float(analysis.logits[metric.wrong])
    return DirectLogitAttribution(
        target=metric.answer,
        target_text=metric.answer_text,
        logit=logit,
        heads=heads,
        attention_bias=biases,
        mlps=mlps,
        embeddings=float(embeddings.to(g.device) @ g),
        constant=constant,
        metric=metric,
        notices=tuple(notices),
    )


@dataclass
class TokenAttribution:
    """Per input token: integrated gradients and gradient x input of the metric: the target's
    log-probability, or logit(target) - logit(wrong) (`metric`).

    `f_input`, `f_baseline` are the metric at the prompt and at the baseline; integrated
    gradients sum to `f_input - f_baseline` up to `completeness_error`. `converged` says the scores
    have an error estimate of at most `tolerance` (`token_change`), `complete` that the
    completeness error is within `COMPLETENESS`; only when both hold (`valid`) are the integrated
    gradients trustworthy to the precision shown.
    """

    tokens: list[Token]
    notices: list[str]
    target: int
    target_text: str
    steps: int  # path points evaluated
    max_steps: int  # the budget the refinement could use
    baseline: str  # "zero" or "mean" token embeddings (the adapter's choice)
    integrated_gradients: torch.Tensor  # (T,)
    gradient_x_input: torch.Tensor  # (T,)
    f_input: float
    f_baseline: float
    token_change: float  # max over tokens of the summed per-panel error estimates
    tolerance: float
    metric: Metric | None = None

    METHOD = (
        "f = log-probability of the target at the last position (or logit(A) - logit(B) when a "
        "second token is given), as a function of the token embeddings (position embeddings "
        "unchanged). Integrated gradients: the straight path from a "
        "baseline b to the prompt's embeddings x; b = all-zero token embeddings where a learned "
        "position vector is added (GPT-2, GPT-Neo, OPT), and the vocabulary's mean embedding at "
        "every position for rotary models (Llama-style, GPT-NeoX, Qwen3, Phi-3, OLMo 2, Gemma), "
        "whose first normalization makes f(alpha x) jump near alpha = 0; the mean is of the "
        "embeddings as the first layer reads them (Gemma's scaled by sqrt(d_model)). A token's "
        "score is the integral over alpha in [0, 1] of (x - b) . df/dx(b + alpha (x - b)) over "
        "its embedding dimensions, by adaptive Simpson: 8 panels halved once, then the panels "
        "with the largest error (a token's estimated error: how much its value changed when the "
        "panel was last halved, / 15 as Richardson estimates Simpson's error; or the panel's "
        "scores not adding up to its change in f, known exactly) are halved until every token's "
        "summed error is within the tolerance and the scores add up to f(x) - f(b) within 2%, or "
        "the step budget is spent; then the result says it is not converged (complete: within "
        "5%). Gradient x input: sum over dimensions of x * df/dx at the prompt."
    )

    @property
    def completeness_error(self) -> float:
        """|sum of IG - (f(input) - f(baseline))| / |f(input) - f(baseline)|."""
        gap = self.f_input - self.f_baseline
        return abs(float(self.integrated_gradients.sum()) - gap) / max(abs(gap), 1e-12)

    @property
    def converged(self) -> bool:
        return self.token_change <= self.tolerance

    @property
    def complete(self) -> bool:
        return self.completeness_error <= COMPLETENESS

    @property
    def valid(self) -> bool:
        return self.converged and self.complete

    def to_dict(self) -> dict:
        return {
            "tokens": [t.to_dict() for t in self.tokens],
            "notices": self.notices,
            "target": {"id": self.target, "text": self.target_text},
            "metric": self.metric.to_dict() if self.metric is not None else None,
            "steps": self.steps,
            "max_steps": self.max_steps,
            "baseline": self.baseline,
            "integrated_gradients": self.integrated_gradients.round(decimals=6).tolist(),
            "gradient_x_input": self.gradient_x_input.round(decimals=6).tolist(),
            "f_input": round(self.f_input, 6),
            "f_baseline": round(self.f_baseline, 6),
            "completeness_error": round(self.completeness_error, 6),
            "complete": self.complete,
            "token_change": round(self.token_change, 6),
            "tolerance": round(self.tolerance, 6),
            "converged": self.converged,
            "valid": self.valid,
            "method": self.METHOD,
        }


def baseline_embeddings(lm: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    """The baseline token embeddings for `x` `(1, T, d)`, as the family's adapter names them."""
    kind = lm.adapter.attribution_baseline
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "mean":
        return mean_embedding(lm).expand_as(x).clone()
    raise UnsupportedModelError(f"Unknown attribution baseline {kind!r} for {lm.card.name}.")


_MEAN_EMBEDDINGS: weakref.WeakKeyDictionary[LoadedModel, torch.Tensor] = weakref.WeakKeyDictionary()


def mean_embedding(lm: LoadedModel, chunk: int = 16384) -> torch.Tensor:
    """The mean over the vocabulary (ids the tokenizer knows) of what the embedding MODULE gives,
    so it is on the scale the model's first layer reads (Gemma multiplies rows by sqrt(d_model)
    inside the module); computed once per model, `chunk` ids at a time."""
    if lm not in _MEAN_EMBEDDINGS:
        module = lm.model.get_submodule(lm.adapter.token_embedding)
        size = min(module.weight.shape[0], len(lm.tokenizer))  # shapes are known on `meta` too
        total = lm.zeros(module.weight.shape[1], dtype=torch.float32)
        with torch.inference_mode():
            for start in range(0, size, chunk):
                ids = torch.arange(start, min(size, start + chunk), device=lm.device)
                total += module(ids).float().sum(0).to(lm.device)
        _MEAN_EMBEDDINGS[lm] = total / size
    return _MEAN_EMBEDDINGS[lm]


class _Path:
    """f and the per-token integrand (x - b) . df/dx along the straight path b + alpha (x - b)."""

    def __init__(
        self,
        lm: LoadedModel,
        ids: torch.Tensor,
        x: torch.Tensor,
        base: torch.Tensor,
        metric: Metric,
        batch_tokens: int,
    ) -> None:
        self.lm, self.ids, self.x, self.base, self.metric = lm, ids, x, base, metric
        length = ids.shape[1]
        self.size = max(1, min(batch_tokens // length, BATCH_CELLS // length**2))

    def __call__(self, alphas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """At each alpha: f `(n,)`, (x - b) . grad per token `(n, T)` and x . grad `(n, T)`;
        float32 on the CPU (the refinement reads them number by number)."""
        delta = self.x - self.base
        values, along, times_x = [], [], []
        with torch.inference_mode(False), torch.enable_grad():
            for chunk in alphas.to(delta.device).split(self.size):
                embeds = self.base + chunk.view(-1, 1, 1) * delta
                f, grad = _metric_and_grad(self.lm, self.ids, embeds, self.metric)
                values.append(f)
                along.append((grad * delta).sum(-1))
                times_x.append((grad * self.x).sum(-1))
        return tuple(torch.cat(parts).cpu() for parts in (values, along, times_x))


def _metric_and_grad(
    lm: LoadedModel, ids: torch.Tensor, embeds: torch.Tensor, metric: Metric
) -> tuple[torch.Tensor, torch.Tensor]:
    """The metric at the last position for each row of `embeds` `(B, T, d)`, and its gradient.

    `embeds` is a float32 leaf: in half precision the pass runs in the model's dtype (the cast is
    part of the graph), and the gradient arrives in float32 at the leaf."""
    embeds = embeds.detach().requires_grad_(True)
    logits, _ = run(lm, ids.expand(len(embeds), -1), capture=False, inputs_embeds=embeds)
    f = metric(logits[:, -1])
    (grad,) = torch.autograd.grad(f.sum(), embeds)
    return f.detach(), grad


class _Panels:
    """Adaptive Simpson on [0, 1]: the points evaluated so far and the leaf panels (a, m, b).

    Each leaf carries a per-token error estimate: how much its parent's Simpson value changed
    when it was halved into this leaf and its sibling, times `ERROR_SHARE` (Richardson's 1/15,
    half to each), the rule's own measure of how far from settled that stretch of the path is.
    """

    def __init__(self, path: _Path) -> None:
        self.path = path
        self.alphas: list[float] = []
        self.f: list[float] = []
        self.g: list[torch.Tensor] = []  # (T,) per point
        self.leaves: list[tuple[int, int, int]] = []
        self.errors: list[torch.Tensor] = []  # (T,) per leaf
        self.gx: torch.Tensor | None = None  # x . df/dx at the prompt (alpha = 1)

    def evaluate(self, alphas: list[float]) -> list[int]:
        f, g, gx = self.path(torch.tensor(alphas))
        if 1.0 in alphas:
            self.gx = gx[alphas.index(1.0)]
        start = len(self.alphas)
        self.alphas += alphas
        self.f += f.tolist()
        self.g += list(g)
        return list(range(start, len(self.alphas)))

    def simpson(self, a: int, m: int, b: int) -> torch.Tensor:
        h = self.alphas[b] - self.alphas[a]
        return h / 6 * (self.g[a] + 4 * self.g[m] + self.g[b])

    def residual(self, a: int, m: int, b: int) -> float:
        """|sum of the panel's scores - (f(b) - f(a))|: exact, since f is known at both ends."""
        return abs(float(self.simpson(a, m, b).sum()) - (self.f[b] - self.f[a]))

    def split(self, leaves: list[int]) -> None:
        """Halve these leaves (two new points each, evaluated in one batch)."""
        new = []
        for p in leaves:
            a, m, b = self.leaves[p]
            new += [(self.alphas[a] + self.alphas[m]) / 2, (self.alphas[m] + self.alphas[b]) / 2]
        added = self.evaluate(new)
        for k, p in enumerate(leaves):
            a, m, b = self.leaves[p]
            left, right = (a, added[2 * k], m), (m, added[2 * k + 1], b)
            change = (self.simpson(*left) + self.simpson(*right) - self.simpson(a, m, b)).abs()
            self.leaves[p], self.errors[p] = left, change * ERROR_SHARE
            self.leaves.append(right)
            self.errors.append(change * ERROR_SHARE)


def token_attribution(
    lm: LoadedModel,
    prompt: str,
    target: object = None,
    *,
    wrong: object = None,
    steps: int = DEFAULT_STEPS,
    tolerance: float = TOKEN_TOLERANCE,
    batch_tokens: int = BATCH_TOKENS,
) -> TokenAttribution:
    """Score each prompt token for the target (default: the top prediction), or with `wrong` for
    logit(target) - logit(wrong); see `METHOD`.

    IG_i = integral over [0, 1] of g_i(alpha) = sum_d (x_id - b_id) df/dx_id(b + alpha (x - b)).
    `steps` is the most path points evaluated (f and the gradient at each). Each Simpson panel
    [a, b] also knows f(b) - f(a) exactly, which its summed scores must match; a real model's f
    can jump within a thousandth of the path (SmolLM2, near alpha 0.23), so refinement is local.
    Stops when max_i sum_panels |change of IG_i when the panel was halved| / 30 <= tolerance *
    max(|f(x) - f(b)|, 1) and the completeness error is within COMPLETENESS_AIM, or when the
    budget of `steps` points is spent.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or not MIN_STEPS <= steps <= MAX_STEPS:
        raise RequestError(
            f"'steps' must be an integer from {MIN_STEPS} to {MAX_STEPS}, got {steps!r}."
        )
    tokens, notices = prompt_ids(lm, prompt)
    check_token_attribution(lm, len(tokens), steps)
    ids = as_ids(tokens)
    embedding = lm.model.get_submodule(lm.adapter.token_embedding)
    jobs.report(0, steps, "path point", at_most=True)  # the whole count first (the clean pass too)
    with torch.inference_mode(False), torch.no_grad():
        x = embedding(ids.to(lm.device)).float()  # (1, T, d), float32 whatever the model's dtype
        clean, _ = run(lm, ids, capture=False)
    metric, targets = make_metric(lm, target, wrong, clean[0, -1])
    path = _Path(lm, ids, x, baseline_embeddings(lm, x), metric, batch_tokens)
    first = min(FIRST_PANELS, (steps - 1) // 4)
    store = _Panels(path)
    store.evaluate([j / (2 * first) for j in range(2 * first + 1)])  # baseline first, prompt last
    store.leaves = [(2 * p, 2 * p + 1, 2 * p + 2) for p in range(first)]
    store.errors = [torch.zeros(ids.shape[1])] * first
    store.split(list(range(first)))  # every leaf now has an error estimate
    gap = store.f[first * 2] - store.f[0]
    limit = COMPLETENESS_AIM * max(abs(gap), 1e-12)
    tolerance = tolerance * max(abs(gap), 1.0)
    while True:
        jobs.report(len(store.alphas), steps, "path point", at_most=True)
        ig = torch.stack([store.simpson(*leaf) for leaf in store.leaves]).sum(0)
        errors = torch.stack(store.errors)
        change = float(errors.sum(0).max())
        complete = abs(float(ig.sum()) - gap) <= limit
        room = min((steps - len(store.alphas)) // 2, path.size // 2)
        if (change <= tolerance and complete) or room < 1:
            break
        # Halve the leaves that carry the most error, per token or in the sum; worst first.
        residual = torch.tensor([store.residual(*leaf) for leaf in store.leaves])
        score = torch.maximum(errors.max(1).values / tolerance, residual / limit)
        order = score.argsort(descending=True)[:room]
        store.split([int(p) for p in order if score[p] >= score[order[0]] / 4])
    return TokenAttribution(
        tokens=tokens,
        notices=notices + targets,
        target=metric.answer,
        target_text=metric.answer_text,
        steps=len(store.alphas),
        max_steps=steps,
        baseline=lm.adapter.attribution_baseline,
        integrated_gradients=ig,
        gradient_x_input=store.gx,
        f_input=store.f[2 * first],
        f_baseline=store.f[0],
        token_change=change,
        tolerance=tolerance,
        metric=metric,
    )
