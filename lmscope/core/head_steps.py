"""Why a head attends: one head's attention for one query token, step by step, with real numbers.

`head_steps` takes the query and key vectors the model used (after any query/key norm and rotary;
kept by the analysis pass) and computes each step eager attention takes: the dot products
`q . k_j`, the scaling, the soft-cap where the model caps its scores (Gemma 2:
`c * tanh(s / c)`), the causal (and local-window) mask, the softmax, and the weighted sum of the
values. `qk_norm` says how the model normalized queries and keys before rotary (Qwen3, Gemma 3,
OLMo 2), so the view can show that step too.
Values are not kept by the pass; `layer_values` gets one layer's from a pass that stops as soon as
that layer has made them, through the same attention function (core/attention.py).
"""

from __future__ import annotations

import math
import weakref
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import nn

from . import attention
from .analysis import Analysis
from .attention import ROW_BLOCK
from .errors import RequestError
from .heads import TARGETED, job_row, target_mass
from .trace import run

_CACHED_LAYERS = 2  # value tensors kept per analysis (one layer is KV x T x d_head floats)
_WANTED: ContextVar[tuple[int, dict] | None] = ContextVar("lmscope_values", default=None)
_VALUES: weakref.WeakKeyDictionary[Analysis, dict[int, torch.Tensor]] = weakref.WeakKeyDictionary()


class _Stop(Exception):
    """Raised inside the forward pass once the wanted layer's values are in hand."""


def _take_values(module: nn.Module, value: torch.Tensor) -> None:
    wanted = _WANTED.get()
    if wanted is None or getattr(module, "_lmscope_layer", None) != wanted[0]:
        return
    wanted[1]["value"] = value[0].detach().float().clone()  # (KV, T, d_head)
    raise _Stop


attention.add_value_hook(_take_values)


def layer_values(analysis: Analysis, layer: int) -> torch.Tensor:
    """Layer `layer`'s value vectors `(KV, T, d_head)` for the analysed prompt (query head h reads
    value head `h // (H // KV)`), from a forward pass that stops right after that layer's values."""
    cached = _VALUES.setdefault(analysis, {})
    if layer not in cached:
        out: dict = {}
        token = _WANTED.set((layer, out))
        try:
            with torch.inference_mode():
                run(analysis.lm, analysis.ids.unsqueeze(0), capture=False)
        except _Stop:
            pass
        finally:
            _WANTED.reset(token)
        if "value" not in out:
            raise RequestError(f"Layer {layer}'s attention values could not be computed.")
        while len(cached) >= _CACHED_LAYERS:
            cached.pop(next(iter(cached)))
        cached[layer] = out["value"]
    return cached[layer]


@dataclass(frozen=True)
class HeadSteps:
    """One head's attention from query token `position`, every step (keys are positions 0..T-1).

    `dots[j] = q . k_j`; `scaled = dots * scaling`; `scores` is `scaled`, soft-capped to
    `softcap * tanh(scaled / softcap)` where the layer caps, with keys the mask hides set to -inf;
    `weights` is the softmax of `scores` (the pattern row); `output = weights @ values`, the
    head's output at `position` (what the model wrote as z). Under grouped-query attention
    `kv_head` names the key/value head this query head shares with `group - 1` others.
    `qk_norm` describes the norm q and k passed through before rotary (None: none).
    """

    layer: int
    head: int
    position: int
    heads: int
    kv_heads: int
    kv_head: int
    scaling: float
    query: torch.Tensor  # (d_head,)
    keys: torch.Tensor  # (T, d_head)
    dots: torch.Tensor  # (T,)
    allowed: torch.Tensor  # (T,) bool: keys this query may read
    scores: torch.Tensor  # (T,) scaled (and soft-capped), -inf where masked
    weights: torch.Tensor  # (T,) the softmax: the pattern row
    values: torch.Tensor | None  # (T, d_head); None when not asked for (`with_values=False`)
    output: torch.Tensor | None  # (d_head,)
    scaled: torch.Tensor | None = None  # (T,) dots * scaling, before any soft-cap and the mask
    softcap: float | None = None
    qk_norm: str | None = None

    @property
    def d_head(self) -> int:
        return self.query.shape[0]

    @property
    def group(self) -> int:
        """Query heads per key/value head (1 without grouped-query attention)."""
        return self.heads // self.kv_heads

    @property
    def group_heads(self) -> list[int]:
        """The query heads that read the same keys and values as this one."""
        return list(range(self.kv_head * self.group, (self.kv_head + 1) * self.group))

    @property
    def standard_scaling(self) -> bool:
        """Whether the model scales by 1/sqrt(d_head), as in "Attention is all you need"."""
        return math.isclose(self.scaling, self.d_head**-0.5, rel_tol=1e-4)

    def top(self, k: int = 8) -> list[int]:
        """The `k` keys with the largest weights, largest first."""
        count = min(k, int(self.allowed.sum()))
        return self.weights.topk(count).indices.tolist()


def head_steps(
    analysis: Analysis, layer: int, head: int, position: int = -1, with_values: bool = True
) -> HeadSteps:
    """Head `head` of layer `layer` for the query token at `position` (negative: from the end).

    `with_values=False` skips the values (they cost a partial forward pass; steps 1-5 do not)."""
    tokens = len(analysis.tokens)
    if not 0 <= layer < len(analysis.keys) or not 0 <= head < analysis.heads_per_layer:
        raise RequestError(f"No head L{layer}-H{head} in this model.")
    keys = analysis.keys[layer]
    if not -tokens <= position < tokens:
        raise RequestError(f"No token at position {position}: the prompt has {tokens} tokens.")
    position %= tokens
    kv_heads = keys.key.shape[1]
    kv_head = head // (keys.heads // kv_heads)
    query = keys.query[0, head, position].float()
    key = keys.key[0, kv_head].float()  # (T, d_head)
    dots = key @ query
    j = torch.arange(tokens, device=key.device)
    allowed = j <= position
    if keys.window is not None:
        allowed &= position - j < keys.window
    if keys.mask is not None:
        allowed &= keys.mask[0, 0, position]
    scaled = dots * keys.scaling
    capped = scaled if keys.softcap is None else torch.tanh(scaled / keys.softcap) * keys.softcap
    scores = capped.masked_fill(~allowed, -math.inf)
    weights = scores.softmax(-1)
    values = layer_values(analysis, layer)[kv_head] if with_values else None
    return HeadSteps(
        layer=layer,
        head=head,
        position=position,
        heads=keys.heads,
        kv_heads=kv_heads,
        kv_head=kv_head,
        scaling=keys.scaling,
        query=query,
        keys=key,
        dots=dots,
        allowed=allowed,
        scores=scores,
        weights=weights,
        values=values,
        output=None if values is None else weights @ values,
        scaled=scaled,
        softcap=keys.softcap,
        qk_norm=qk_norm_text(analysis.lm),
    )


def job_position(analysis: Analysis, layer: int, head: int) -> int | None:
    """The query token where head L`layer`-H`head` does the job it is filed under (heads.TARGETED:
    previous-token, self, duplicate-token, induction): the row `heads.job_row` picks from the
    attention it puts where that job looks. None for the others (diffuse, other, too little
    evidence), and where no row looks there. Its pattern is read a block of rows at a time."""
    category = analysis.heads.categories[layer][head]
    if category not in TARGETED:
        return None
    keys, ids, tokens = analysis.keys[layer], analysis.ids, len(analysis.tokens)
    mass = []
    for start in range(0, tokens, ROW_BLOCK):
        stop = min(tokens, start + ROW_BLOCK)
        block = keys.rows(start, stop, keys=stop, heads=[head])[0, 0]
        mass.append(target_mass(block, ids.to(block.device), start, category, keys.window).cpu())
    return job_row(torch.cat(mass))


def qk_norm_text(lm) -> str | None:
    """How the model normalized queries and keys before rotary, in words (None: it did not)."""
    adapter = lm.adapter
    if adapter.q_norm is None:
        return None
    if adapter.qk_norm_span == "all":
        return "one RMSNorm over all heads' queries together (and one over all keys), before rotary"
    return "an RMSNorm on each head's query and on each key, before rotary"
