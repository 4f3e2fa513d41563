"""Attribution: which heads, MLPs and input tokens pushed the model toward a target token.

Direct logit attribution (DLA) splits the target's logit at the last position into what each
component wrote into the residual stream. Token attribution scores each input token by integrated
gradients and by gradient x input on its token embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core.analysis import Analysis
from ..core.errors import RequestError, UnsupportedModelError
from ..core.model import LoadedModel
from ..core.tokens import Token
from ..core.trace import run
from .inputs import as_ids, prompt_ids, target_id

DEFAULT_STEPS = 64
WARP = 3  # path points at alpha = s^3: dense near the baseline, where f changes fastest
MAX_STEPS = 512
BATCH_TOKENS = 4096  # tokens per batched forward/backward pass of integrated gradients
BATCH_CELLS = 2**20  # rows x T^2 attention cells kept for the backward pass (bounds memory)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.LayerNorm) or "RMSNorm" in type(module).__name__


def readout(lm: LoadedModel, final: torch.Tensor, target: int) -> tuple[torch.Tensor, float]:
    """The target logit as a linear function of the residual stream, final norm's scale frozen.

    Returns `(g, c)` with `logit(x) = g . x + c` exactly at `x = final` (the full last-position
    residual) and, for any split `x = sum_i x_i`, `g . x_i` is component i's direct effect.
    With u = the unembedding column of the target (through any linear projection after the norm),
    w, b the norm's weight and bias, and s its scale frozen at `final`:
    LayerNorm: s = sqrt(var(final) + eps), g = (w*u - mean(w*u)) / s (the mean subtraction moved
    onto g, which is the same as centring each component), c = b . u + unembedding bias;
    RMSNorm: s = sqrt(mean(final^2) + eps), g = w*u / s.
    """
    modules = [m for p in lm.adapter.unembed if (m := lm.adapter.submodule(lm.model, p))]
    norm = modules.pop(0) if modules and _is_norm(modules[0]) else None
    if not all(isinstance(m, nn.Linear) for m in modules):
        raise UnsupportedModelError(
            f"Direct logit attribution needs a linear unembedding; {lm.card.name} has "
            f"{', '.join(type(m).__name__ for m in modules)}."
        )
    width = modules[0].in_features
    with torch.inference_mode(False), torch.enable_grad():
        y = torch.zeros(width, requires_grad=True)
        out = y
        for module in modules:
            out = module(out)
        (u,) = torch.autograd.grad(out[target], y)
    c = float(out[target])  # the unembedding's own bias (0 for every family so far)
    final = final.float()
    if norm is None:
        return u, c
    weight = norm.weight if norm.weight is not None else torch.ones_like(final)
    eps = getattr(norm, "eps", None) or getattr(norm, "variance_epsilon", 1e-6)
    wu = weight.float() * u
    if isinstance(norm, nn.LayerNorm):
        scale = (final.var(unbiased=False) + eps).sqrt()
        bias = float(norm.bias.float() @ u) if norm.bias is not None else 0.0
        return (wu - wu.mean()) / scale, c + bias
    scale = (final.pow(2).mean() + eps).sqrt()
    return wu / scale, c


def head_writes(lm: LoadedModel, z: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What each head of `layer` wrote: out_proj(z, other heads zeroed) - out_proj(0), and the bias.

    z: `(heads, d_head)` at one position. Returns `(heads, d)` and the out_proj bias `(d,)`.
    """
    block = lm.adapter.block_list(lm.model)[layer]
    out_proj = block.get_submodule(lm.adapter.out_proj)
    heads = z.shape[0]
    alone = torch.zeros(heads, heads, z.shape[1])
    alone[range(heads), range(heads)] = z
    bias = out_proj(torch.zeros(1, z.numel()))[0]
    return out_proj(alone.flatten(1)) - bias, bias


@dataclass
class DirectLogitAttribution:
    """The target's logit split by component: heads [layer][head], MLPs and attention biases per
    layer, embeddings, and the constant (final norm bias + unembedding bias). They sum to `logit`.
    """

    target: int
    target_text: str
    logit: float
    heads: torch.Tensor  # (layers, heads)
    attention_bias: torch.Tensor  # (layers,)
    mlps: torch.Tensor  # (layers,)
    embeddings: float
    constant: float

    METHOD = (
        "Each head's output z at the last position is pushed through its layer's output projection "
        "alone (other heads zeroed, projection bias removed). Every component is then read through "
        "the final normalization with its scale frozen at the value on the full residual stream "
        "(divide by that scale, centre for LayerNorm, multiply by the norm weight) and dotted with "
        "the target's unembedding column. Components sum to the target's logit exactly."
    )

    @property
    def total(self) -> float:
        parts = self.heads.sum() + self.attention_bias.sum() + self.mlps.sum()
        return float(parts) + self.embeddings + self.constant

    def to_dict(self) -> dict:
        return {
            "target": {"id": self.target, "text": self.target_text},
            "logit": round(self.logit, 5),
            "heads": self.heads.round(decimals=5).tolist(),
            "attention_bias": self.attention_bias.round(decimals=5).tolist(),
            "mlps": self.mlps.round(decimals=5).tolist(),
            "embeddings": round(self.embeddings, 5),
            "constant": round(self.constant, 5),
            "method": self.METHOD,
        }


def direct_logit_attribution(analysis: Analysis, target: object = None) -> DirectLogitAttribution:
    """Split the target's last-position logit (default: the top prediction) by component.

    Needs a pre-norm model, where the residual stream is the sum of the embeddings and every
    sublayer's output; a model where it is not (post-norm) is refused.
    """
    lm = analysis.lm
    target = target_id(lm, target, analysis.logits)
    final = analysis.residual[-1, -1]
    embeddings = analysis.residual[0, -1]
    summed = embeddings + analysis.attn_out[:, -1].sum(0) + analysis.mlp_out[:, -1].sum(0)
    if not torch.allclose(summed, final, rtol=1e-3, atol=1e-3 * float(final.abs().max())):
        raise UnsupportedModelError(
            f"{lm.card.name} normalizes its residual stream between layers (post-norm), so the "
            "final stream is not a sum of component outputs: direct logit attribution does not apply."
        )
    with torch.inference_mode():
        g, constant = readout(lm, final, target)
        writes = [head_writes(lm, analysis.z[layer, -1], layer) for layer in range(lm.layers)]
        heads = torch.stack([w for w, _ in writes]) @ g
        biases = torch.stack([b for _, b in writes]) @ g
        mlps = analysis.mlp_out[:, -1] @ g
    return DirectLogitAttribution(
        target=target,
        target_text=lm.token_text(target),
        logit=float(analysis.logits[target]),
        heads=heads,
        attention_bias=biases,
        mlps=mlps,
        embeddings=float(embeddings @ g),
        constant=constant,
    )


@dataclass
class TokenAttribution:
    """Per input token: integrated gradients and gradient x input of the target's log-probability.

    `f_input`, `f_baseline` are log p(target) at the prompt and at the baseline (all-zero token
    embeddings); integrated gradients sum to `f_input - f_baseline` up to `completeness_error`.
    """

    tokens: list[Token]
    notices: list[str]
    target: int
    target_text: str
    steps: int
    integrated_gradients: torch.Tensor  # (T,)
    gradient_x_input: torch.Tensor  # (T,)
    f_input: float
    f_baseline: float

    METHOD = (
        "f = log-probability of the target at the last position, as a function of the token "
        "embeddings (position embeddings unchanged). Integrated gradients: baseline = all-zero token "
        "embeddings, straight path alpha * x, integral over alpha by the midpoint rule in s with "
        "alpha = s^3 (`steps` points, dense near the baseline, where normalizing near-zero "
        "embeddings makes f change fastest); a token's score is the sum over its embedding "
        "dimensions of x * integrated gradient. Gradient x input: sum over dimensions of "
        "x * df/dx at the prompt."
    )

    @property
    def completeness_error(self) -> float:
        """|sum of IG - (f(input) - f(baseline))| / |f(input) - f(baseline)|."""
        gap = self.f_input - self.f_baseline
        return abs(float(self.integrated_gradients.sum()) - gap) / max(abs(gap), 1e-12)

    def to_dict(self) -> dict:
        return {
            "tokens": [t.to_dict() for t in self.tokens],
            "notices": self.notices,
            "target": {"id": self.target, "text": self.target_text},
            "steps": self.steps,
            "integrated_gradients": self.integrated_gradients.round(decimals=6).tolist(),
            "gradient_x_input": self.gradient_x_input.round(decimals=6).tolist(),
            "f_input": round(self.f_input, 6),
            "f_baseline": round(self.f_baseline, 6),
            "completeness_error": round(self.completeness_error, 6),
            "method": self.METHOD,
        }


def _logprob_and_grad(
    lm: LoadedModel, ids: torch.Tensor, embeds: torch.Tensor, target: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(target) at the last position for each row of `embeds` `(B, T, d)`, and its gradient."""
    embeds = embeds.detach().requires_grad_(True)
    logits, _ = run(lm, ids.expand(len(embeds), -1), capture=False, inputs_embeds=embeds)
    f = logits[:, -1].float().log_softmax(-1)[:, target]
    (grad,) = torch.autograd.grad(f.sum(), embeds)
    return f.detach(), grad


def token_attribution(
    lm: LoadedModel,
    prompt: str,
    target: object = None,
    *,
    steps: int = DEFAULT_STEPS,
    batch_tokens: int = BATCH_TOKENS,
) -> TokenAttribution:
    """Score each prompt token for the target (default: the top prediction); see `METHOD`.

    IG_i = sum_d x_id * sum_k w_k df/dx_id(alpha_k * x), with s_k = (k + 1/2) / m, k < m,
    alpha_k = s_k^3 and w_k = 3 s_k^2 / m (the midpoint rule for the integral over alpha in [0, 1]).
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        raise RequestError(f"'steps' must be an integer from 1 to {MAX_STEPS}, got {steps!r}.")
    tokens, notices = prompt_ids(lm, prompt)
    ids = as_ids(tokens)
    embedding = lm.model.get_submodule(lm.adapter.token_embedding)
    with torch.inference_mode(False), torch.no_grad():
        x = embedding(ids).float()  # (1, T, d)
        clean, _ = run(lm, ids, capture=False)
    target = target_id(lm, target, clean[0, -1])
    # Rows: the m path points, then the prompt itself (alpha = 1), then the baseline (alpha = 0).
    s = (torch.arange(steps) + 0.5) / steps
    alphas, weights = torch.cat([s**WARP, torch.tensor([1.0, 0.0])]), WARP * s ** (WARP - 1) / steps
    length = ids.shape[1]
    size = max(1, min(batch_tokens // length, BATCH_CELLS // length**2))
    values, grads = [], []
    with torch.inference_mode(False), torch.enable_grad():
        for chunk in alphas.split(size):
            f, grad = _logprob_and_grad(lm, ids, chunk.view(-1, 1, 1) * x, target)
            values.append(f)
            grads.append(grad)
    f, grad = torch.cat(values), torch.cat(grads)
    return TokenAttribution(
        tokens=tokens,
        notices=notices,
        target=target,
        target_text=lm.token_text(target),
        steps=steps,
        integrated_gradients=(x[0] * (weights.view(-1, 1, 1) * grad[:steps]).sum(0)).sum(-1),
        gradient_x_input=(x[0] * grad[steps]).sum(-1),
        f_input=float(f[steps]),
        f_baseline=float(f[steps + 1]),
    )
