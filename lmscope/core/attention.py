"""Attention in the traced pass: the fast kernel for the output, queries and keys kept for patterns.

lmscope registers one attention function with transformers (`IMPLEMENTATION`, selected through
`config._attn_implementation`). GPT-2, GPT-NeoX, OPT and Llama/Qwen2/Mistral call it for every
layer; families that compute attention themselves route it here from their adapter (GPT-Neo). The
output comes from `scaled_dot_product_attention`; what the pattern needs is kept instead of the
pattern: each layer's queries and keys as the model used them (after rotary, before the
grouped-query repeat), its scaling and its mask rule. A pattern is then rebuilt, for the rows a view
asks for, the way eager attention computes it: `softmax(q k^T * scaling, masked)`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from .heads import softmax_entropy

IMPLEMENTATION = "lmscope"
ROW_BLOCK = 256  # query rows rebuilt at once when a whole layer is scored or pooled, at most...
BLOCK_ELEMENTS = 1 << 22  # ... and fewer on long prompts: ~16 MB of float32 per block of heads
# Query rows per block where a scored layer attends from its pattern: the fastest measured on
# SmolLM2's shape at 512-8,192 tokens (a block's passes then run mostly in cache).
ATTEND_ROWS = 64
# Called with (module, a maker of the layer's LayerKeys) on every attention call; trace.py adds the
# one that records (it builds the keys only while a traced pass is capturing). A recorder that
# scores the layer's heads returns a `Scorer`, handed every block of the layer's pattern.
# (block of query rows, its first row, the rows' entropies)
Scorer = Callable[[torch.Tensor, int, "torch.Tensor | None"], None]
Recorder = Callable[[nn.Module, Callable[[], "LayerKeys"]], "Scorer | None"]
_RECORDERS: list[Recorder] = []
# Called with (module, value) where a caller asked for values (core/head_steps.py's on-demand pass).
_VALUE_HOOKS: list[Callable[[nn.Module, torch.Tensor], None]] = []


@dataclass(frozen=True)
class LayerKeys:
    """What rebuilds one layer's attention patterns exactly.

    query `(B, H, T, d)` and key `(B, KV, T, d)` as the model used them (KV divides H: query head h
    reads key head `h // (H // KV)`); `scaling` multiplies `q k^T`; causal always, plus `window`
    (keys with `i - j < window` only: GPT-Neo's local layers, Mistral, Gemma's sliding layers) and
    `mask`, the boolean `(B, 1, T, T)` mask the model passed (padding), where it passed one;
    `softcap` c soft-caps the scaled scores to `c * tanh(s / c)` before the mask (Gemma 2).
    """

    query: torch.Tensor
    key: torch.Tensor
    scaling: float
    window: int | None = None
    mask: torch.Tensor | None = None
    softcap: float | None = None

    @property
    def heads(self) -> int:
        return self.query.shape[1]

    @property
    def tokens(self) -> int:
        return self.query.shape[2]

    def rows(
        self,
        start: int = 0,
        stop: int | None = None,
        keys: int | None = None,
        heads: slice | list[int] | None = None,
    ) -> torch.Tensor:
        """Attention of query rows `start:stop` over keys `0:keys`: `(B, h, rows, keys)` float32.

        Each row equals eager attention's own; with `keys < T` only causal rows are complete
        (`keys >= stop`), which is all a causal model reads.
        """
        return self.logits(start, stop, keys, heads).softmax(-1)

    def logits(
        self,
        start: int = 0,
        stop: int | None = None,
        keys: int | None = None,
        heads: slice | list[int] | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`rows` before the softmax: `q k^T * scaling` (soft-capped where the layer caps), masked
        keys at float32's lowest; for every head, written into the start of `out` (a flat float32
        buffer) where given."""
        size = self.tokens
        stop = size if stop is None else stop
        keys = size if keys is None or self.mask is not None else keys  # masked rows may spill
        picked = range(self.heads)[heads] if isinstance(heads, slice) else heads
        picked = list(range(self.heads)) if picked is None else list(picked)
        kv = self.key.shape[1]
        groups = self.heads // kv
        key = self.key[:, :, :keys].float().transpose(-1, -2)  # (B, KV, d, keys)
        if picked == list(range(self.heads)):  # every head: a group's rows in one product
            query = self.query[:, :, start:stop].float() * self.scaling
            grouped = query.unflatten(1, (kv, groups)).flatten(2, 3)  # (B, KV, groups * rows, d)
            into = None if out is None else _view(out, (*grouped.shape[:-1], key.shape[-1]))
            scores = torch.matmul(grouped, key, out=into).unflatten(2, (groups, -1)).flatten(1, 2)
        else:
            query = self.query[:, picked, start:stop].float() * self.scaling
            scores = torch.matmul(query, key[:, [h // groups for h in picked]])
        if self.softcap is not None:
            scores.div_(self.softcap).tanh_().mul_(self.softcap)
        i = torch.arange(start, stop, device=query.device).unsqueeze(-1)
        lowest = torch.finfo(scores.dtype).min
        if self.window is None and self.mask is None:  # causal only: keys before `start` all count
            j = torch.arange(start, keys, device=query.device)
            scores[..., start:].masked_fill_(j > i, lowest)
        else:
            j = torch.arange(keys, device=query.device)
            allowed = j <= i
            if self.window is not None:
                allowed = allowed & (i - j < self.window)
            if self.mask is not None:
                allowed = allowed & self.mask[:, :, start:stop, :keys]
            scores.masked_fill_(~allowed, lowest)
        return scores

    def blocks(self, rows: int | None = None, **kwargs) -> Iterator[tuple[int, torch.Tensor]]:
        """The causal rows of the layer, `rows` (`ROW_BLOCK`) at a time: `(start, (B, h, r, stop))`."""
        picked = kwargs.get("heads")
        heads = (
            self.heads
            if picked is None
            else len(range(self.heads)[picked] if isinstance(picked, slice) else picked)
        )
        for start, stop in self.spans(heads, rows):
            yield start, self.rows(start, stop, keys=stop, **kwargs)

    def spans(self, heads: int, rows: int | None = None) -> Iterator[tuple[int, int]]:
        """Query row blocks `(start, stop)`: `rows` (default `ROW_BLOCK`), fewer on long prompts."""
        rows = min(rows or ROW_BLOCK, max(16, BLOCK_ELEMENTS // (heads * self.tokens)))
        for start in range(0, self.tokens, rows):
            yield start, min(self.tokens, start + rows)

    def attend(self, value: torch.Tensor, score: Scorer) -> torch.Tensor:
        """The layer's output `(B, H, T, d)` float32 from its pattern, a block of query rows at a
        time, each block (and its rows' entropies) handed to `score` on the way: one pass over
        q k^T both attends and scores, where sdpa and then a rebuilt pattern would take two.
        Every block's logits and weights go into two buffers made once: a new tensor of a block's
        size would come fresh from the OS each time (trace.large_blocks_to_the_os), and its page
        faults cost more than the block's arithmetic."""
        batch, kv, _, width = value.shape
        groups = self.heads // kv
        value = value.float()
        out = value.new_empty(batch, self.heads, self.tokens, width)
        spans = list(self.spans(self.heads, ATTEND_ROWS))
        rows = max(stop - start for start, stop in spans)
        scratch = value.new_empty(2, batch * self.heads * rows * self.tokens)
        for start, stop in spans:
            logits = self.logits(start, stop, keys=stop, out=scratch[0])
            block, entropy = softmax_entropy(logits, out=_view(scratch[1], logits.shape))
            score(block, start, entropy)
            # A key/value group's query rows in one product with its values (query head h reads
            # key/value head h // groups): (B, KV, groups * rows, d).
            grouped = block.unflatten(1, (kv, groups)).flatten(2, 3)
            read = torch.matmul(grouped, value[:, :, : block.shape[-1]])
            out[:, :, start:stop] = read.unflatten(2, (groups, -1)).flatten(1, 2)
        return out


def _view(buffer: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The start of a flat buffer as a contiguous tensor of `shape`."""
    return buffer[: math.prod(shape)].view(shape)


def keep(
    module: nn.Module, query, key, scaling: float, window=None, mask=None, value=None, softcap=None
) -> torch.Tensor | None:
    """Hand one layer's queries and keys to the active recorder (if a traced pass is recording),
    and its values `(B, KV, T, d)` to the value hooks. Where a recorder scores the layer's heads,
    or the layer soft-caps its scores (which the fast kernel cannot), the pattern is made here
    block by block and, given `value`, the layer's output with it: returned `(B, H, T, d)`
    float32 for the caller to use instead of its own attention."""
    if value is not None:
        for hook in _VALUE_HOOKS:
            hook(module, value)

    @functools.cache
    def make() -> LayerKeys:
        allowed = mask
        if allowed is not None and allowed.dtype != torch.bool:  # additive float: 0 = allowed
            allowed = allowed > torch.finfo(allowed.dtype).min / 2
        cap = None if softcap is None else float(softcap)
        return LayerKeys(query.contiguous(), key.contiguous(), float(scaling), window, allowed, cap)

    scorers = [scorer for record in _RECORDERS if (scorer := record(module, make))]
    if not scorers:
        if softcap is None or value is None:
            return None
        differentiable = torch.is_grad_enabled() and (query.requires_grad or value.requires_grad)
        if query.shape[-2] != key.shape[-2] or differentiable:  # a generation step, or a backward
            return capped_attention(make(), value)  # pass to come (`attend` writes into buffers)
        return make().attend(value, _ignore)

    def score(block: torch.Tensor, start: int, entropy: torch.Tensor | None = None) -> None:
        for scorer in scorers:
            scorer(block, start, entropy)

    if value is None:
        for start, block in make().blocks():
            score(block, start)
        return None
    return make().attend(value, score)


def attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    sliding_window: int | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention, with the layer's queries and keys handed to the recorder."""
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    softcap = kwargs.pop("softcap", None)
    scored = keep(module, query, key, scale, sliding_window, attention_mask, value, softcap)
    if scored is not None:  # the pattern was made (to score heads, or soft-capped): the output too
        return scored.to(value.dtype).transpose(1, 2).contiguous(), None
    kwargs.pop("output_attentions", None)
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scale, **kwargs
    )


def _ignore(block: torch.Tensor, start: int, entropy: torch.Tensor | None = None) -> None:
    """A scorer that keeps nothing (a soft-capped layer attends from its pattern unscored)."""


def capped_attention(keys: LayerKeys, value: torch.Tensor) -> torch.Tensor:
    """`(B, H, Tq, d)` float32 output of queries that sit at the end of the keys (all of them, or
    the last of a cached generation step), soft-capped as eager attention does:
    `softmax(c tanh(q k^T s / c))` over the keys the causal rule, the window and the mask allow.
    Made whole `(B, H, Tq, Tk)`, so autograd can follow it."""
    query, key = keys.query.float(), keys.key.float()
    groups = query.shape[1] // key.shape[1]
    scores = torch.matmul(query, key.repeat_interleave(groups, 1).transpose(-1, -2)) * keys.scaling
    scores = keys.softcap * torch.tanh(scores / keys.softcap)
    rows, size = scores.shape[-2:]
    i = torch.arange(size - rows, size, device=scores.device).unsqueeze(-1)
    j = torch.arange(size, device=scores.device)
    allowed = j <= i
    if keys.window is not None:
        allowed = allowed & (i - j < keys.window)
    if keys.mask is not None:
        allowed = allowed & keys.mask[..., -rows:, :size]
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    return torch.matmul(scores.softmax(-1), value.float().repeat_interleave(groups, 1))


def causal_sdpa(query, key, value, scaling: float, allowed: torch.Tensor | None) -> torch.Tensor:
    """`(B, H, T, d)` attention output on the fast kernel, for families that attend themselves."""
    if allowed is None:
        return F.scaled_dot_product_attention(query, key, value, scale=scaling, is_causal=True)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=allowed, scale=scaling)


def register() -> None:
    """Make `IMPLEMENTATION` known to transformers: the attention function and its masks (sdpa's:
    no mask at all for an unpadded causal prompt, a boolean one otherwise)."""
    AttentionInterface.register(IMPLEMENTATION, attention_forward)
    AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)


def add_recorder(record: Recorder) -> None:
    """Call `record` on every attention call from now on (trace.py's, which checks its context)."""
    if record not in _RECORDERS:
        _RECORDERS.append(record)


def add_value_hook(hook: Callable[[nn.Module, torch.Tensor], None]) -> None:
    """Call `hook(module, value)` on every attention call from now on (it checks its own context)."""
    if hook not in _VALUE_HOOKS:
        _VALUE_HOOKS.append(hook)


@contextmanager
def eager(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` on transformers' own eager attention inside the block (e.g. to compare patterns
    with `output_attentions=True`); not for a model other threads are using at the same time."""
    before = model.config._attn_implementation
    model.config._attn_implementation = "eager"
    try:
        yield model
    finally:
        model.config._attn_implementation = before
