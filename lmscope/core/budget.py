"""What a request may cost: an estimate made before any forward pass, and the limits it must meet.

Every analysis and experiment calls one of the `check_*` functions below at its start, so the
library, the CLI, the HTTP API and the dashboard refuse the same inputs with the same message.

Work is counted in floating-point operations of the passes an operation will run: per token and
layer `2 x (the layer's parameters)` for the matrix products, `4 x keys x heads x d_head` for the
attention products, and `PATTERN_FLOP` per attention score (eager attention's masking, softmax and
copies are memory-bound); `2 x vocab x d` per unembedded position; a backward pass counts twice its
forward pass. That is turned into seconds at an assumed speed (`LMSCOPE_GFLOPS`, else the
default of the device the model runs on: `DEFAULT_GFLOPS`) plus `CALL_SECONDS` per model call,
and shown to the user as "about N forward passes of T tokens". An analysis holds its streams,
queries and keys in the model's dtype (`analysis_memory`).
The constants fit benchmarks/results/experiments.md and the plain passes of
shared/notes/measured-here.md (GPT-2 Small, 2 CPU cores) to within about 30%: a pass of 32 / 512 /
1,024 tokens 0.07 / 1.4 / 4.5 s (measured 0.09 / 1.06 / 3.49), the 144-head scan of 32 tokens
3.3 s (3.4), integrated gradients with 64 points 7.8 s (6.4), 20 greedy tokens 0.8 s (0.9); and
SmolLM2 analyses of 1,001 / 4,001 tokens 7.3 / 100 s (measured 4.9 / 153 s on one thread of a busy
machine: long prompts are the least certain part).

Limits (environment variables, read on every request):
- `LMSCOPE_MAX_REQUEST_SECONDS` (default 90): estimated seconds of work one request may start, so
  that anything measured under a minute here runs, and a 1,024-token scan (about 6 minutes by
  this estimate; 17.8 minutes measured on a busy machine) does not.
- `LMSCOPE_MAX_ANALYSIS_MEMORY` (default 4G): memory one analysis may hold (`analysis_memory`).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .errors import LmscopeError, RequestError
from .loading import parse_bytes
from .model import LoadedModel

SECONDS_ENV, DEFAULT_SECONDS = "LMSCOPE_MAX_REQUEST_SECONDS", 90.0
SPEED_ENV = "LMSCOPE_GFLOPS"
# Assumed speed by device type. cpu: fitted on 2 busy cores (above). cuda and mps: placeholders
# until benchmarks/gpu_check.sh has measured a GPU (its table prints this estimate beside the
# measured time); far below a GPU's peak, as lmscope's attention builds float32 patterns in blocks.
DEFAULT_GFLOPS = {"cpu": 150.0, "cuda": 20_000.0, "mps": 1_000.0}
MEMORY_ENV, DEFAULT_MEMORY = "LMSCOPE_MAX_ANALYSIS_MEMORY", "4G"
PATTERN_FLOP = 3000  # one attention score costs about as much as 3,000 FLOP of matrix products
CALL_SECONDS = 0.03  # fixed cost of one model call (Python, dispatch, cache handling)
_LAYER_PARAMETERS: weakref.WeakKeyDictionary[LoadedModel, float] = weakref.WeakKeyDictionary()


class CostLimitError(RequestError):
    """A request whose estimated cost is over a configured limit; refused before it runs."""

    status = 413


class SettingError(LmscopeError):
    """A limit's environment variable does not parse (the operator's mistake, not the user's)."""

    status = 500


def _setting(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:  # also refuses NaN
        raise SettingError(f"{name} must be a positive number (or inf for no limit), got {raw!r}.")
    return value


def max_seconds() -> float:
    return _setting(SECONDS_ENV, DEFAULT_SECONDS)


def speed(lm: LoadedModel | None = None) -> float:
    """Assumed FLOP per second: `LMSCOPE_GFLOPS`, else the default of the model's device type."""
    device = lm.device.type if lm is not None else "cpu"
    return _setting(SPEED_ENV, DEFAULT_GFLOPS.get(device, DEFAULT_GFLOPS["cpu"])) * 1e9


def max_memory() -> int:
    raw = os.environ.get(MEMORY_ENV, "").strip() or DEFAULT_MEMORY
    try:
        value = parse_bytes(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise SettingError(f"{MEMORY_ENV} must be a size such as 4G or 512M, got {raw!r}.")
    return value


def layer_parameters(lm: LoadedModel) -> float:
    """Parameters of one transformer block, averaged over the blocks (embeddings excluded)."""
    if lm not in _LAYER_PARAMETERS:
        blocks = lm.adapter.block_list(lm.model)
        total = sum(p.numel() for block in blocks for p in block.parameters())
        _LAYER_PARAMETERS[lm] = total / max(1, len(blocks))
    return _LAYER_PARAMETERS[lm]


def layer_flop(lm: LoadedModel, tokens: int, keys: int | None = None) -> float:
    """One layer, one batch row: `tokens` new positions attending to `keys` positions (default all)."""
    keys = tokens if keys is None else keys
    width = lm.heads * lm.card.head_size
    return (
        2 * tokens * layer_parameters(lm)
        + 4 * tokens * keys * width
        + PATTERN_FLOP * lm.heads * tokens * keys
    )


def unembed_flop(lm: LoadedModel) -> float:
    """One position through the unembedding."""
    return 2 * lm.card.vocab_size * lm.card.hidden_size


def pass_flop(lm: LoadedModel, tokens: int, rows: int = 1, unembedded: int = 1) -> float:
    """A forward pass of `rows` x `tokens`, unembedding `unembedded` positions per row."""
    return rows * (lm.layers * layer_flop(lm, tokens) + unembedded * unembed_flop(lm))


@dataclass(frozen=True)
class Estimate:
    """The work an operation would start on a prompt of `tokens` tokens."""

    lm: LoadedModel = field(repr=False)
    what: str  # "This ablation scan", the subject of the message
    tokens: int
    flop: float
    calls: int = 1

    @property
    def seconds(self) -> float:
        return self.flop / speed(self.lm) + self.calls * CALL_SECONDS

    @property
    def passes(self) -> float:
        """The work as a number of plain forward passes of the prompt."""
        return self.flop / pass_flop(self.lm, self.tokens)

    def describe(self) -> str:
        passes = _count(self.passes)
        return (
            f"about {passes} forward pass{'' if passes == '1' else 'es'} of {self.tokens:,} tokens "
            f"through {self.lm.card.name} ({_count(self.flop / 1e12)} TFLOP, roughly "
            f"{_duration(self.seconds)} at {speed(self.lm) / 1e9:g} GFLOP/s on {self.lm.device})"
        )


def _count(n: float) -> str:
    return f"{n:,.0f}" if n >= 10 else f"{n:.2g}"


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.2g} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.0f} hours"


def _most_tokens(fits: Callable[[int], bool], tokens: int) -> int:
    """The longest prompt, up to `tokens`, for which `fits` holds (0 if not even one token)."""
    low, high = 0, tokens
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def check(estimate: Estimate, at: Callable[[int], Estimate], other: str = "") -> Estimate:
    """Refuse `estimate` with a `CostLimitError` if it is over `LMSCOPE_MAX_REQUEST_SECONDS`.

    `at(tokens)` is the same operation on another prompt length (for the hint); `other` names
    another way to make it smaller ("fewer steps").
    """
    limit = max_seconds()
    if estimate.seconds <= limit:
        return estimate
    most = _most_tokens(lambda t: at(t).seconds <= limit, estimate.tokens)
    ways = [w for w in (f"a prompt of at most {most:,} tokens" if most else "", other) if w]
    hint = f"Use {' or '.join(ways)}, or raise" if ways else "Raise"
    raise CostLimitError(
        f"{estimate.what} would take {estimate.describe()}; the limit is {limit:g} s of work per "
        f"request. {hint} the limit with {SECONDS_ENV} (or {SPEED_ENV} on a faster machine)."
    )


def analysis_memory(lm: LoadedModel, tokens: int) -> int:
    """Bytes an analysis of `tokens` tokens holds on the model's device: in the model's dtype the
    residual stream, every head's z, queries and keys (which rebuild its attention patterns on
    request) and each MLP's last row; in float32 the embeddings, the norms of what each sublayer
    wrote and the logits row."""
    d, layers = lm.card.hidden_size, lm.layers
    size = torch.empty(0, dtype=lm.dtype).element_size()
    streams = (layers + 1) * tokens * d + layers * d
    heads = layers * tokens * lm.card.head_size * (2 * lm.heads + lm.card.key_value_heads)
    single = 2 * tokens * d + 2 * layers * tokens + lm.card.vocab_size
    return size * (streams + heads) + 4 * single


def analysis(lm: LoadedModel, tokens: int) -> Estimate:
    return Estimate(lm, "This analysis", tokens, pass_flop(lm, tokens))


def check_analysis(lm: LoadedModel, tokens: int) -> Estimate:
    """An analysis's compute and the memory it will hold, both under their limits."""
    limit = max_memory()
    if analysis_memory(lm, tokens) > limit:
        most = _most_tokens(lambda t: analysis_memory(lm, t) <= limit, tokens)
        raise CostLimitError(
            f"This analysis would hold about {_size(analysis_memory(lm, tokens))} ({lm.layers} "
            f"layers of streams, queries and keys for {tokens:,} tokens); the limit is "
            f"{_size(limit)} per analysis. Use a prompt of at most {most:,} tokens, or raise the "
            f"limit with {MEMORY_ENV}."
        )
    return check(analysis(lm, tokens), lambda t: analysis(lm, t))


def generation(lm: LoadedModel, tokens: int, new_tokens: int, beams: int = 1) -> Estimate:
    """The prompt pass (one row per beam), one cached step per new token, and the pass over the
    finished text that reads every step's alternatives."""
    steps = sum(
        beams * (lm.layers * layer_flop(lm, 1, tokens + i) + unembed_flop(lm))
        for i in range(1, new_tokens)
    )
    final = pass_flop(lm, tokens + new_tokens - 1, unembedded=new_tokens)
    flop = pass_flop(lm, tokens, rows=beams) + steps + final
    return Estimate(lm, "This generation", tokens, flop, calls=new_tokens + 1)


def check_generation(lm: LoadedModel, tokens: int, new_tokens: int, beams: int = 1) -> Estimate:
    return check(
        generation(lm, tokens, new_tokens, beams),
        lambda t: generation(lm, t, new_tokens, beams),
        "fewer new tokens or beams",
    )


def ablation(lm: LoadedModel, tokens: int, new_tokens: int) -> Estimate:
    """A clean and an ablated pass, and a greedy continuation of each when `new_tokens`."""
    flop = 2 * pass_flop(lm, tokens)
    if new_tokens:
        flop += 2 * generation(lm, tokens, new_tokens).flop
    return Estimate(lm, "This ablation", tokens, flop, calls=2 + 2 * (new_tokens + 1))


def check_ablation(lm: LoadedModel, tokens: int, new_tokens: int) -> Estimate:
    return check(
        ablation(lm, tokens, new_tokens),
        lambda t: ablation(lm, t, new_tokens),
        "fewer new tokens",
    )


def steering(lm: LoadedModel, tokens: int, new_tokens: int, vector_prompts: list[int]) -> Estimate:
    """A plain and a steered run (as an ablation's) and one pass of each prompt the steering
    vector is made from (`vector_prompts`: their lengths): the whole request, counted once."""
    runs = ablation(lm, tokens, new_tokens)
    flop = runs.flop + sum(pass_flop(lm, t) for t in vector_prompts)
    return Estimate(lm, "This steering", tokens, flop, calls=runs.calls + len(vector_prompts))


def check_steering(
    lm: LoadedModel, tokens: int, new_tokens: int, vector_prompts: list[int]
) -> Estimate:
    return check(
        steering(lm, tokens, new_tokens, vector_prompts),
        lambda t: steering(lm, t, new_tokens, vector_prompts),
        "fewer new tokens or shorter steering prompts",
    )


def scan(lm: LoadedModel, tokens: int, mean: bool = False) -> Estimate:
    """Every head ablated alone: layer l runs for the clean row and one row per head of layers <= l
    (`ablation.scan_pass`); mean ablation adds the clean pass that measures each head's mean."""
    layer_rows = sum(1 + lm.heads * (layer + 1) for layer in range(lm.layers))
    flop = layer_rows * layer_flop(lm, tokens) + (1 + lm.layers * lm.heads) * unembed_flop(lm)
    if mean:
        flop += pass_flop(lm, tokens)
    return Estimate(lm, "This ablation scan", tokens, flop, calls=2)


def check_scan(lm: LoadedModel, tokens: int, mean: bool = False) -> Estimate:
    return check(scan(lm, tokens, mean), lambda t: scan(lm, t, mean))


def token_attribution(lm: LoadedModel, tokens: int, steps: int) -> Estimate:
    """Integrated gradients at its most: a forward and a backward pass (3 forward passes' work) at
    each of `steps` path points (the prompt and the baseline among them), after one clean pass."""
    flop = 3 * pass_flop(lm, tokens, rows=steps) + pass_flop(lm, tokens)
    what = f"This token attribution (at most {steps:,} path points)"
    return Estimate(lm, what, tokens, flop, calls=2)


def check_token_attribution(lm: LoadedModel, tokens: int, steps: int) -> Estimate:
    return check(
        token_attribution(lm, tokens, steps),
        lambda t: token_attribution(lm, t, steps),
        "fewer steps",
    )


def check_comparison(
    first: LoadedModel, second: LoadedModel, tokens: tuple[int, int]
) -> tuple[Estimate, Estimate]:
    """Two analyses of one prompt (`tokens` long for each model), together under the limit."""
    a, b = analysis(first, tokens[0]), analysis(second, tokens[1])
    limit = max_seconds()
    if a.seconds + b.seconds > limit:
        raise CostLimitError(
            f"This comparison would take {a.describe()} and {b.describe()}; the limit is "
            f"{limit:g} s of work per request. Use a shorter prompt, or raise the limit with "
            f"{SECONDS_ENV} (or {SPEED_ENV} on a faster machine)."
        )
    return a, b


def patching(lm: LoadedModel, tokens: int, component: str, scan: str, checked: int) -> Estimate:
    """Activation patching: one forward pass of each prompt (it also keeps the activations patched
    in, and for AtP it is the differentiable pass); the exact scan's layer rows, one row per cell
    from its layer on (cells per layer: positions, or heads); AtP's backward pass (twice a forward)
    and, without the exact scan (which measures them already), its `checked` cells, at most a whole
    pass each."""
    per_layer = lm.heads if component == "heads" else tokens
    flop = 2 * pass_flop(lm, tokens)
    calls = 1  # both prompts in one batch; AtP runs them one at a time
    if scan in ("exact", "both"):
        layer_rows = sum(1 + per_layer * (layer + 1) for layer in range(lm.layers))
        flop += layer_rows * layer_flop(lm, tokens) + (1 + lm.layers * per_layer) * unembed_flop(lm)
        calls += 1
    if scan in ("atp", "both"):
        flop += 2 * pass_flop(lm, tokens)
        calls += 1
    if scan == "atp" and checked:
        flop += checked * pass_flop(lm, tokens)
        calls += 1
    return Estimate(lm, f"This patching scan ({component}, {scan})", tokens, flop, calls=calls)


def check_patching(
    lm: LoadedModel, tokens: int, component: str, scan: str, checked: int = 0
) -> Estimate:
    return check(
        patching(lm, tokens, component, scan, checked),
        lambda t: patching(lm, t, component, scan, checked),
        "the AtP estimate ('atp')" if scan != "atp" else "fewer checked cells",
    )


def ablation_estimate(lm: LoadedModel, tokens: int, exact: bool, checked: int) -> Estimate:
    """AtP of the head-ablation scan: one forward pass of the prompt (it gives the metric and the
    heads' mean) and its backward pass (twice a forward); with `exact` the full scan beside it
    (which measures the checked heads too), else the `checked` heads, at most a whole pass each."""
    flop, calls = 3 * pass_flop(lm, tokens), 1
    if exact:
        flop, calls = flop + scan(lm, tokens).flop, calls + 1
    elif checked:
        flop, calls = flop + checked * pass_flop(lm, tokens), calls + 1
    what = f"This head-ablation scan ({'both' if exact else 'atp'})"
    return Estimate(lm, what, tokens, flop, calls=calls)


def check_ablation_estimate(
    lm: LoadedModel, tokens: int, exact: bool, checked: int = 0
) -> Estimate:
    return check(
        ablation_estimate(lm, tokens, exact, checked),
        lambda t: ablation_estimate(lm, t, exact, checked),
        "the AtP estimate alone ('atp')" if exact else "fewer checked heads",
    )
