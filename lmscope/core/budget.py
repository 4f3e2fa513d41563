"""What a request may cost: an estimate made before any forward pass, and the limits it must meet.

Every analysis and experiment calls one of the `check_*` functions below at its start, so the
library, the CLI, the HTTP API and the dashboard refuse the same inputs with the same message.

Work is counted in floating-point operations of the passes an operation will run: per token and
layer `2 x (the layer's parameters)` for the matrix products, and per attention score (one head,
one query, one key) the FLOP-equivalent that THIS model's attention costs on this machine;
`2 x vocab x d` per unembedded position; a backward pass counts twice its forward pass; a
recording, head-scoring pass (an analysis) its own measured share more. The speed, the cost of a
score and of a model call are measured once per model by a short timed probe (core/speed.py),
so the estimate follows the machine and the model ("about 3 forward passes of 1,024 tokens
through SmolLM2, roughly 12 s"), not assumed constants; `LMSCOPE_GFLOPS` assumes a speed instead.
benchmarks/results/estimates.md compares estimates with measured times.
An analysis holds its streams, queries and keys in the model's dtype (`analysis_memory`).

Limits (environment variables, read on every request):
- `LMSCOPE_MAX_REQUEST_SECONDS` (default 90): estimated seconds of work one request may start, so
  that anything measured under a minute here runs, and a 1,024-token scan (about 6 minutes by
  this estimate; 17.8 minutes measured on a busy machine) does not.
- `LMSCOPE_MAX_ANALYSIS_MEMORY` (default 4G): memory one analysis may hold (`analysis_memory`).
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch

from . import speed
from .devices import size_setting
from .errors import RequestError, positive_setting
from .model import LoadedModel
from .speed import speed_of

SECONDS_ENV, DEFAULT_SECONDS = "LMSCOPE_MAX_REQUEST_SECONDS", 90.0
SPEED_ENV = speed.SPEED_ENV
MEMORY_ENV, DEFAULT_MEMORY = "LMSCOPE_MAX_ANALYSIS_MEMORY", "4G"
_LAYER_PARAMETERS: weakref.WeakKeyDictionary[LoadedModel, float] = weakref.WeakKeyDictionary()


class CostLimitError(RequestError):
    """A request whose estimated cost is over a configured limit; refused before it runs.
    `seconds`: the estimated time when the time limit refused it (the page may then offer to run
    it anyway, see `confirmed`); None when memory did."""

    status = 413

    def __init__(self, message: str, seconds: float | None = None) -> None:
        super().__init__(message)
        self.seconds = seconds


_CONFIRMED: ContextVar[bool] = ContextVar("lmscope_long_work_confirmed", default=False)


@contextmanager
def confirmed() -> Iterator[None]:
    """Work started in this context was offered with its estimate and confirmed by the user (the
    page's "Run anyway"): it is not held to `LMSCOPE_MAX_REQUEST_SECONDS`, since it shows its
    progress and can be cancelled. The memory limit still holds."""
    token = _CONFIRMED.set(True)
    try:
        yield
    finally:
        _CONFIRMED.reset(token)


def max_seconds() -> float:
    if _CONFIRMED.get():
        return math.inf
    raw = os.environ.get(SECONDS_ENV, "").strip()
    return positive_setting(SECONDS_ENV, raw) if raw else DEFAULT_SECONDS


def max_memory() -> int:
    return size_setting(MEMORY_ENV, DEFAULT_MEMORY)


def layer_parameters(lm: LoadedModel) -> float:
    """Parameters of one transformer block, averaged over the blocks (embeddings excluded)."""
    if lm not in _LAYER_PARAMETERS:
        _LAYER_PARAMETERS[lm] = speed.layer_parameters(lm)
    return _LAYER_PARAMETERS[lm]


def layer_flop(lm: LoadedModel, tokens: int, keys: int | None = None) -> float:
    """One layer, one batch row: `tokens` new positions attending to `keys` positions (default
    all), each attention score at what it costs this model here (`Speed.score_flop`)."""
    keys = tokens if keys is None else keys
    return 2 * tokens * layer_parameters(lm) + speed_of(lm).score_flop * lm.heads * tokens * keys


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
        return speed_of(self.lm).seconds(self.flop, self.calls)

    @property
    def passes(self) -> float:
        """The work as a number of plain forward passes of the prompt."""
        return self.flop / pass_flop(self.lm, self.tokens)

    def describe(self) -> str:
        passes = _count(self.passes)
        return (
            f"about {passes} forward pass{'' if passes == '1' else 'es'} of {self.tokens:,} tokens "
            f"through {self.lm.card.name} ({_count(self.flop / 1e12)} TFLOP, roughly "
            f"{_duration(self.seconds)} at {speed_of(self.lm).describe()})"
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
        f"request. {hint} the limit with {SECONDS_ENV}.",
        seconds=estimate.seconds,
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
    """One recording, head-scoring pass, and the logit lens read off every layer's stream."""
    fast = speed_of(lm)
    traced = fast.traced_score_flop or fast.score_flop
    flop = (
        fast.traced_factor
        * (lm.layers * 2 * tokens * layer_parameters(lm) + (lm.layers + 1) * unembed_flop(lm))
        + traced * lm.layers * lm.heads * tokens * tokens
    )
    return Estimate(lm, "This analysis", tokens, flop + fast.analysis_call * fast.flops)


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
            f"{SECONDS_ENV}.",
            seconds=a.seconds + b.seconds,
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
