"""One traced forward pass: hooks that record every activation a view needs, by one naming scheme.

Hooks are installed once per model and do nothing unless a `Recorder` is active in the calling
thread's context, so concurrent requests on one shared model never see each other's activations or
ablations. Names follow TransformerLens: `hook_embed`, `hook_pos_embed`, `blocks.{l}.hook_resid_pre`,
`blocks.{l}.attn.hook_z`, `blocks.{l}.hook_attn_out`, `blocks.{l}.hook_mlp_out`,
`blocks.{l}.hook_resid_post`. What a sublayer adds to the stream (`hook_attn_out`, `hook_mlp_out`)
is recorded where it joins the stream: after the norm a family applies to the sublayer's output
(Gemma, OLMo 2: `Adapter.attn_out_norm`), so `resid_post - resid_pre == attn_out + mlp_out` for
every family (in parallel as well as in sequence). Attention runs on lmscope's attention function (core/attention.py):
no pattern is made during the pass; each layer's queries and keys are kept (`Recorder.keys`) and,
where asked, every head is scored on the fly, a block of query rows at a time (`Recorder.sums`).
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from . import attention, jobs
from .attention import LayerKeys
from .heads import ScoreSums
from .model import LoadedModel
from .slots import FairSlots, Turn

_ACTIVE: ContextVar[Recorder | None] = ContextVar("lmscope_recorder", default=None)
_STEER: ContextVar[Steer | None] = ContextVar("lmscope_steer", default=None)
# Each forward pass already runs on torch's intra-op threads; more passes at once than
# cores / threads only oversubscribe the CPU, so concurrent requests take turns per pass, in the
# order they asked, and a long pass gives way at a layer boundary to a waiting one (core/slots.py).
_SLOTS = FairSlots(max(1, (os.cpu_count() or 1) // torch.get_num_threads()))
_TURN: ContextVar[Turn | None] = ContextVar("lmscope_turn", default=None)


@contextmanager
def pass_slot() -> Iterator[None]:
    """Hold one of the process's forward-pass slots (wait for one if all are taken); a cancelled
    job (core/jobs.py) stops here, also while it waits."""
    jobs.check()
    with _SLOTS.turn(jobs.check) as turn:
        token = _TURN.set(turn)
        try:
            yield
        finally:
            _TURN.reset(token)


def _between_layers(layer: int, layers: int):
    """Entering a block: the active job's progress and a cancel point, and the slot given up to
    a waiting pass if this one has held it long enough (`Turn.give_way`)."""

    def hook(module: nn.Module, args: tuple) -> None:
        jobs.layer(layer, layers)
        turn = _TURN.get()
        if turn is not None:
            turn.give_way(jobs.check)

    return hook


@dataclass
class HeadPatch:
    """Replace some heads' outputs in one layer: `z * keep + replacement * (1 - keep)`.

    keep: `(heads,)` or `(batch, heads)` of 0/1; replacement: `(heads, d_head)` (zeros = zero ablation).
    """

    keep: torch.Tensor
    replacement: torch.Tensor


@dataclass
class StreamPatch:
    """Replace some positions of one `(B, T, d)` activation by another run's: `where(mask, source, x)`.

    mask: `(T,)` or `(batch, T)` of 0/1 (which positions of which row); source: `(T, d)`.
    """

    mask: torch.Tensor
    source: torch.Tensor

    def apply(self, value: torch.Tensor) -> torch.Tensor:
        tokens, width = self.source.shape
        split = value.reshape(-1, tokens, width)  # OPT's fc2 flattens (batch, T) into one axis
        mask = self.mask.to(value.device, torch.bool).reshape(-1, tokens, 1)
        return torch.where(mask, self.source.to(value), split).reshape(value.shape)


@dataclass
class Recorder:
    """What one forward pass records (if `capture`) and which heads it patches."""

    capture: bool = True
    patches: dict[int, HeadPatch] = field(default_factory=dict)
    # {hook name: patch} for `blocks.{l}.hook_resid_pre`, `.hook_attn_out` and `.hook_mlp_out`.
    stream_patches: dict[str, StreamPatch] = field(default_factory=dict)
    acts: dict[str, torch.Tensor] = field(default_factory=dict)
    # {layer: n}: n copies of batch row 0 are appended to the stream entering block `layer`, so
    # interventions that only differ from that layer on share one run of the layers before it.
    grow: dict[int, int] = field(default_factory=dict)
    # What rebuilds each layer's patterns (see attention.LayerKeys), kept if `keep_keys`.
    keep_keys: bool = True
    keys: dict[int, LayerKeys] = field(default_factory=dict)
    # With `score_ids` `(B, T)` set, every head of each layer is scored during the pass, over blocks
    # of query rows of its pattern (never a whole T x T): `sums[layer]` per batch row and head.
    score_ids: torch.Tensor | None = None
    sums: dict[int, ScoreSums] = field(default_factory=dict)
    # With `layers` set (and no `grow`), each per-layer activation is copied as it is made into one
    # preallocated `(layers, B, ...)` tensor per name (`residual`: `(layers + 1, B, T, d)`, the
    # stream before block 0 and after each block), and `acts` / `keys` hold views of it: what is
    # kept sits in a few large blocks, so the memory the pass frees is reused instead of staying as
    # holes between kept tensors (1.3 GB of resident memory at 4,096 tokens on SmolLM2).
    layers: int = 0
    stacks: dict[str, torch.Tensor] = field(default_factory=dict)
    # Without `keep_sublayer_outputs`, what each sublayer wrote is kept only as its norms per
    # position (`hook_attn_out_norm`, `hook_mlp_out_norm`) and, for the MLP, its row at the last
    # position (`hook_mlp_out_last`: what attribution splits); the attention's output is the output
    # projection of z, which is kept.
    keep_sublayer_outputs: bool = True
    _last_out: torch.Tensor | None = field(default=None, repr=False)

    def stacked(self, name: str, index: int, value: torch.Tensor, slots: int) -> torch.Tensor:
        """`value` copied into slot `index` of the `name` stack, when one can hold it."""
        if not self.layers or self.grow:
            return value
        stack = self.stacks.get(name)
        if stack is None:
            stack = self.stacks[name] = value.new_empty((slots, *value.shape))
        if stack.shape[1:] != value.shape:
            return value
        return stack[index].copy_(value)

    def stack(self, name: str, layers: int) -> torch.Tensor:
        """`blocks.{l}.<name>` for every layer, stacked on a new first axis (`residual`: the stream
        before block 0, then after each block)."""
        if name == "residual":
            if "residual" in self.stacks:
                return self.stacks["residual"]
            first = self.acts["blocks.0.hook_resid_pre"].unsqueeze(0)
            return torch.cat([first, self.stack("hook_resid_post", layers)])
        if name in self.stacks:
            return self.stacks[name]
        return torch.stack([self.acts[f"blocks.{layer}.{name}"] for layer in range(layers)])

    def scores(self, layers: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The streamed `(scores, evidence)`, each `(B, layers, heads)`."""
        per_layer = [self.sums[layer].scores() for layer in range(layers)]
        return tuple(
            {k: torch.stack([p[part][k] for p in per_layer], 1) for k in per_layer[0][part]}
            for part in (0, 1)
        )


def _keep_keys(module: nn.Module, make) -> attention.Scorer | None:
    """attention.py's recorder: keep the layer's queries and keys; where the pass scores heads,
    the scorer that attention.py hands every block of the layer's pattern."""
    rec = _ACTIVE.get()
    layer = getattr(module, "_lmscope_layer", None)
    if rec is None or not rec.capture or layer is None:
        return None
    keys = make()
    if rec.keep_keys:
        query = rec.stacked("attn.query", layer, keys.query, rec.layers)
        key = rec.stacked("attn.key", layer, keys.key, rec.layers)
        rec.keys[layer] = replace(keys, query=query.contiguous(), key=key.contiguous())
    ids = rec.score_ids
    if ids is None or ids.shape != (keys.query.shape[0], keys.tokens) or rec.grow:
        return None
    sums = rec.sums[layer] = ScoreSums.start(ids, keys.heads, keys.window)
    return sums.add


attention.add_recorder(_keep_keys)


@dataclass(frozen=True)
class Steer:
    """Add `vector` `(d,)` to the residual stream entering block `layer`, at every position from
    `start` on (absolute positions: tokens generated after the prompt are steered too)."""

    layer: int
    vector: torch.Tensor
    start: int = 0


@contextmanager
def steering(steer: Steer | None) -> Iterator[None]:
    """Steer every forward pass run in this context (including cached generation steps)."""
    token = _STEER.set(steer)
    try:
        yield
    finally:
        _STEER.reset(token)


def _steer(layer: int):
    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        steer = _STEER.get()
        if steer is None or steer.layer != layer:
            return None
        hidden = args[0] if args else kwargs["hidden_states"]
        positions = kwargs.get("position_ids")
        if positions is None:  # a family that passes none: count from the cache's length
            cache = kwargs.get("cache") or kwargs.get("past_key_values")
            past = cache.get_seq_length() if cache is not None else 0
            positions = torch.arange(hidden.shape[1], device=hidden.device) + past
        on = (positions.reshape(-1, positions.shape[-1]) >= steer.start).to(hidden)
        hidden = hidden + on.unsqueeze(-1) * steer.vector.to(hidden)  # (B, T, d)
        if args:
            return (hidden, *args[1:]), kwargs
        return args, kwargs | {"hidden_states": hidden}

    return hook


@contextmanager
def recording(recorder: Recorder) -> Iterator[Recorder]:
    """Make `recorder` the active one for forward passes run in this context."""
    token = _ACTIVE.set(recorder)
    try:
        yield recorder
    finally:
        _ACTIVE.reset(token)


def _norms(out: torch.Tensor) -> torch.Tensor:
    """Each position's length `(B, T)`, summed in float32 whatever the model's dtype."""
    return torch.linalg.vector_norm(out, dim=-1, dtype=torch.float32)


def _first(output: object) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _save(name: str):
    def hook(module: nn.Module, args: tuple, output: object) -> None:
        rec = _ACTIVE.get()
        if rec is not None and rec.capture:
            rec.acts[name] = _first(output)

    return hook


def _save_attention(layer: int):
    """On the module whose output is what attention adds to the stream: the attention module
    (returns `(out, ...)`) or the norm after it (returns `out`)."""

    def hook(module: nn.Module, args: tuple, output: object) -> object | None:
        rec = _ACTIVE.get()
        patch = rec.stream_patches.get(f"blocks.{layer}.hook_attn_out") if rec else None
        if patch is not None:
            patched = patch.apply(_first(output))
            output = (patched, *output[1:]) if isinstance(output, tuple) else patched
        if rec is not None and rec.capture:
            out = _first(output)
            if rec.keep_sublayer_outputs:
                out = rec.stacked("hook_attn_out", layer, out, rec.layers)
            else:  # dropped once the MLP hook has read its shape
                norms = rec.stacked("hook_attn_out_norm", layer, _norms(out), rec.layers)
                rec.acts[f"blocks.{layer}.hook_attn_out_norm"] = norms
            rec.acts[f"blocks.{layer}.hook_attn_out"] = out
        return output if patch is not None else None

    return hook


def _save_mlp(layer: int):
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        rec = _ACTIVE.get()
        patch = rec.stream_patches.get(f"blocks.{layer}.hook_mlp_out") if rec else None
        if patch is not None:
            output = patch.apply(output)
        if rec is not None and rec.capture:  # OPT's fc2 flattens (batch, T) into one axis
            shape = rec.acts[f"blocks.{layer}.hook_attn_out"].shape
            out = output if output.shape == shape else output.reshape(shape)  # keeps gradients
            if rec.keep_sublayer_outputs:
                rec.acts[f"blocks.{layer}.hook_mlp_out"] = rec.stacked(
                    "hook_mlp_out", layer, out, rec.layers
                )
            else:
                for name, value in (("norm", _norms(out)), ("last", out[:, -1])):
                    kept = rec.stacked(f"hook_mlp_out_{name}", layer, value, rec.layers)
                    rec.acts[f"blocks.{layer}.hook_mlp_out_{name}"] = kept
                del rec.acts[f"blocks.{layer}.hook_attn_out"]
        return output if patch is not None else None

    return hook


def _save_resid_pre(layer: int):
    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        rec = _ACTIVE.get()
        if rec is None:
            return None
        hidden = args[0] if args else kwargs["hidden_states"]
        copies = rec.grow.get(layer, 0)
        if copies:
            hidden = torch.cat([hidden, hidden[:1].expand(copies, *hidden.shape[1:])])
        patch = rec.stream_patches.get(f"blocks.{layer}.hook_resid_pre")
        if patch is not None:
            hidden = patch.apply(hidden)
        if rec.capture:
            if layer == 0:
                hidden_kept = rec.stacked("residual", 0, hidden, rec.layers + 1)
            elif hidden is rec._last_out and "residual" in rec.stacks:
                hidden_kept = rec.stacks["residual"][layer]  # the stream after block layer - 1
            else:
                hidden_kept = hidden
            rec.acts[f"blocks.{layer}.hook_resid_pre"] = hidden_kept
        if not copies and patch is None:
            return None
        if args:
            return (hidden, *args[1:]), kwargs
        return args, kwargs | {"hidden_states": hidden}

    return hook


def _patch_z(layer: int, heads: int):
    def hook(module: nn.Module, args: tuple) -> tuple | None:
        rec = _ACTIVE.get()
        if rec is None:
            return None
        z = args[0]
        patch = rec.patches.get(layer)
        if patch is not None:
            split = z.unflatten(-1, (heads, -1))  # (B, T, heads, d_head)
            keep = patch.keep.to(z).reshape(-1, 1, heads, 1)
            z = (split * keep + patch.replacement.to(z) * (1 - keep)).flatten(-2)
        if rec.capture:
            rec.acts[f"blocks.{layer}.attn.hook_z"] = rec.stacked(
                "attn.hook_z", layer, z, rec.layers
            )
        return (z, *args[1:]) if patch is not None else None

    return hook


def _save_resid_post(layer: int):
    def hook(module: nn.Module, args: tuple, output: object) -> None:
        rec = _ACTIVE.get()
        if rec is not None and rec.capture:
            out = _first(output)
            kept = rec.stacked("residual", layer + 1, out, rec.layers + 1)
            rec.acts[f"blocks.{layer}.hook_resid_post"] = kept
            rec._last_out = out

    return hook


def _contiguous(module: nn.Module, args: tuple) -> tuple | None:
    """A batch of last positions is a strided slice; as such `linear` expands the unembedding into
    one copy per row (a batched matmul, 8x slower for the 145 rows of an ablation scan)."""
    if args and not args[0].is_contiguous():
        return (args[0].contiguous(), *args[1:])
    return None


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


@functools.cache
def large_blocks_to_the_os(threshold: int = 1 << 20) -> bool:
    """Ask glibc to map every block of `threshold` bytes or more on its own, so what a pass frees
    goes back to the OS at once (glibc's default raises that bar to 32 MB as it goes, and a long
    prompt's per-layer tensors then leave GBs of freed holes resident: 3.7 GB instead of 2.4 GB
    peak at 4,096 tokens on SmolLM2). Skipped where the user set MALLOC_MMAP_THRESHOLD_ or not glibc."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


def use_lmscope_attention(lm: LoadedModel) -> None:
    """Run the model's attention through lmscope's attention function (core/attention.py)."""
    model, adapter = lm.model, lm.adapter
    attention.register()
    if adapter.route_attention is not None:  # a family computing attention itself
        adapter.route_attention(model)
        model.config._attn_implementation = attention.IMPLEMENTATION
    else:
        model.set_attn_implementation(attention.IMPLEMENTATION)
    for layer, block in enumerate(adapter.block_list(model)):
        for module in block.get_submodule(adapter.attention).modules():
            module._lmscope_layer = layer


def install_hooks(lm: LoadedModel) -> None:
    """Attach the recording hooks to a model, once, and select lmscope's attention function."""
    model, adapter = lm.model, lm.adapter
    use_lmscope_attention(lm)
    large_blocks_to_the_os()
    if getattr(model, "_lmscope_hooked", False):
        return
    model.get_submodule(adapter.token_embedding).register_forward_hook(_save("hook_embed"))
    if adapter.position_embedding:
        module = model.get_submodule(adapter.position_embedding)
        module.register_forward_hook(_save("hook_pos_embed"))
    for layer, block in enumerate(adapter.block_list(model)):
        block.register_forward_pre_hook(_steer(layer), with_kwargs=True)  # before it is recorded
        block.register_forward_pre_hook(_between_layers(layer, lm.layers))
        block.register_forward_pre_hook(_save_resid_pre(layer), with_kwargs=True)
        attn_writes = block.get_submodule(adapter.attn_out_norm or adapter.attention)
        attn_writes.register_forward_hook(_save_attention(layer))
        block.get_submodule(adapter.out_proj).register_forward_pre_hook(_patch_z(layer, lm.heads))
        mlp_writes = block.get_submodule(adapter.mlp_out_norm or adapter.mlp)
        mlp_writes.register_forward_hook(_save_mlp(layer))
        block.register_forward_hook(_save_resid_post(layer))
    model.get_submodule(adapter.unembed[-1]).register_forward_pre_hook(_contiguous)
    model._lmscope_hooked = True


def run(
    lm: LoadedModel,
    input_ids: torch.Tensor,
    *,
    capture: bool = True,
    patches: dict[int, HeadPatch] | None = None,
    stream_patches: dict[str, StreamPatch] | None = None,
    logits_to_keep: int | torch.Tensor = 1,
    inputs_embeds: torch.Tensor | None = None,
    grow: dict[int, int] | None = None,
    score: bool = False,
    keep_keys: bool = True,
    keep_sublayer_outputs: bool = True,
) -> tuple[torch.Tensor, Recorder]:
    """One forward pass of `input_ids` `(B, T)`; logits `(B, logits_to_keep, vocab)` and the record.

    Only the last `logits_to_keep` positions are unembedded (a tensor names positions, an empty
    one none): views that need other positions ask for them through the logit lens.
    `grow={layer: n}` appends n copies of row 0 to the stream entering `layer` (see
    `Recorder.grow`); the logits then have B + sum(n) rows. `score` scores
    every head on `input_ids` during the pass (`Recorder.scores`); `keep_keys` keeps what rebuilds
    the patterns (`Recorder.keys`); without `keep_sublayer_outputs` what each sublayer wrote is kept
    as its norms (and the MLP's last row, `Recorder.keep_sublayer_outputs`).
    `stream_patches` replace positions of the residual stream or a sublayer's output (`StreamPatch`).
    Inputs move to the model's device (`inputs_embeds` also to its dtype, differentiably); the
    logits and the record stay where the model made them.
    """
    input_ids = input_ids.to(lm.device)
    if inputs_embeds is not None:
        inputs_embeds = inputs_embeds.to(lm.device, lm.dtype)
    if isinstance(logits_to_keep, torch.Tensor):
        logits_to_keep = logits_to_keep.to(lm.device)
    recorder = Recorder(
        capture=capture,
        patches=patches or {},
        stream_patches=stream_patches or {},
        grow=grow or {},
        keep_keys=keep_keys,
        score_ids=input_ids if score and capture else None,
        layers=lm.layers if capture else 0,
        keep_sublayer_outputs=keep_sublayer_outputs,
    )
    with pass_slot(), recording(recorder):
        if inputs_embeds is not None:
            out = lm.model(inputs_embeds=inputs_embeds, logits_to_keep=logits_to_keep,
                           use_cache=False)  # fmt: skip
        else:  # no key/value cache: nothing generates from this pass (3% of a short batch)
            out = lm.model(input_ids=input_ids, logits_to_keep=logits_to_keep, use_cache=False)
    return out.logits, recorder
