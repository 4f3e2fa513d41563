"""How fast this machine runs a loaded model, measured: a short timed probe per model, so that
cost estimates (core/budget.py) are calibrated, not assumed.

The probe times a one-token pass (the cost of a call), plain forward passes of `PLAIN` tokens and
analyses of `TRACED` tokens (the pass that records and scores every head, and all an analysis
makes of it), and fits

    seconds = call + linear FLOP / flops + scores x score_flop / flops

where `linear` is 2 x the blocks' parameters per token after the first and `scores` the
attention scores (heads x queries x keys, every layer); an analysis gets its own coefficients
(`traced_factor`, `traced_score_flop`, in the plain pass's FLOP units) and what it adds once
(`analysis_call`). Where scores are much of the work (hundreds to thousands of tokens) a short
probe misjudges them, so long points of each kind are timed too: what one block of a plain pass
and of an analysis of each `LONG` length costs (the first 3 blocks' time less the first one's),
times the layers. Coefficients are fitted non-negative, each point's error relative to its whole
time. The result is kept in memory per loaded model and on disk per model, revision, device,
dtype, torch threads and torch version (under `$XDG_CACHE_HOME/lmscope/speed/`), so a model is
measured once: about 9 s on SmolLM2 (2 threads).

With `LMSCOPE_GFLOPS` set, nothing is measured: the assumed speed and `ASSUMED_SCORE_FLOP` are
used (a machine to plan for, or a test that wants fixed numbers).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import positive_setting
from .model import LoadedModel
from .trace import run

SPEED_ENV = "LMSCOPE_GFLOPS"
ASSUMED_SCORE_FLOP = 400.0  # one attention score as FLOP of matrix products, when not measured
ASSUMED_CALL = 0.03  # seconds per model call, when not measured
PLAIN = (32, 256)  # token counts of the timed plain passes (after a one-token pass)
TRACED = (16, 64)  # ... and of the timed analyses
LONG = (512, 2048)  # tokens of the long probes: the first blocks of a plain pass and an analysis
LONG_BLOCKS = (1, 3)  # a long probe runs this many first blocks, then that many
ASSUMED_GFLOPS = 150.0  # where a pass costs no more than its call, for want of a measure
VERSION = 4  # of the probe: a new one measures again
_MEASURED: weakref.WeakKeyDictionary[LoadedModel, Speed] = weakref.WeakKeyDictionary()
# How to time one analysis of `tokens` tokens (core/analysis.py registers `probe_analysis`:
# the pass and everything an analysis makes of it); else the recording pass alone is timed.
_ANALYSIS: list[Callable[[LoadedModel, int], object]] = []


def time_analyses_with(probe: Callable[[LoadedModel, int], object]) -> None:
    """What the probe times as one analysis (registered by core/analysis.py, which needs this
    module for its estimates: it cannot be imported from here)."""
    _ANALYSIS[:] = [probe]


_LOCK = threading.Lock()


@dataclass(frozen=True)
class Speed:
    """Seconds per unit of each kind of work, for one model on this machine."""

    flops: float  # FLOP/s of the blocks' and the unembedding's matrix products
    score_flop: float  # one attention score of a plain pass, as FLOP of matrix products
    call: float  # seconds per model call
    traced_factor: float = 1.0  # a recording pass's matrix products, against a plain pass's
    traced_score_flop: float | None = None  # one attention score of a recording pass
    analysis_call: float = 0.0  # what an analysis adds to its pass, once (its tables, top-k)
    measured: bool = False

    def seconds(self, flop: float, calls: int) -> float:
        return flop / self.flops + calls * self.call

    def describe(self) -> str:
        how = "measured on this model" if self.measured else f"assumed ({SPEED_ENV})"
        return f"{self.flops / 1e9:.3g} GFLOP/s {how}"


def assumed(gflops: float) -> Speed:
    return Speed(gflops * 1e9, ASSUMED_SCORE_FLOP, ASSUMED_CALL)


def layer_parameters(lm: LoadedModel) -> float:
    """Parameters of one transformer block, averaged over the blocks (embeddings excluded)."""
    blocks = lm.adapter.block_list(lm.model)
    return sum(p.numel() for block in blocks for p in block.parameters()) / max(1, len(blocks))


def linear_flop(lm: LoadedModel, tokens: int) -> float:
    """The blocks' matrix products for `tokens` positions, every layer."""
    return 2.0 * tokens * layer_parameters(lm) * lm.layers


def scores(lm: LoadedModel, tokens: int, keys: int | None = None) -> float:
    """Attention scores of `tokens` queries over `keys` keys (all: causal half counted whole, as
    the kernels compute it), every head of every layer."""
    return float(lm.layers * lm.heads * tokens * (tokens if keys is None else keys))


def readout_flop(lm: LoadedModel, rows: int) -> float:
    return 2.0 * rows * lm.card.vocab_size * lm.card.hidden_size


def _probe_ids(lm: LoadedModel, tokens: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(tokens)
    embedding = lm.model.get_input_embeddings()
    high = min(lm.card.vocab_size, len(lm.tokenizer), embedding.num_embeddings)
    return torch.randint(0, high, (1, tokens), generator=generator).to(lm.device)


def _timed(run, device: torch.device, repeats: int = 2, warm_up: bool = True) -> float:
    """The fastest of `repeats` timings, after a warm-up run (a busy machine slows some of
    them); on a GPU, to the end of the work it queued."""

    def wait() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if warm_up:
        run()
    times = []
    for _ in range(repeats):
        wait()
        started = time.perf_counter()
        run()
        wait()
        times.append(time.perf_counter() - started)
    return min(times)


def _fit(rows: list[list[float]], seconds: list[float]) -> list[float]:
    solution, *_ = np.linalg.lstsq(np.array(rows), np.array(seconds), rcond=None)
    return [float(x) for x in solution]


def _nonnegative_fit(
    rows: list[list[float]], seconds: list[float], totals: list[float]
) -> list[float]:
    """Least squares of `seconds` on the columns of `rows` with every coefficient >= 0, each
    point's error relative to `totals` (its whole time: an estimate is judged by its ratio, and
    the long points would else decide everything): the best of the plain fits on each subset of
    the columns whose coefficients all come out >= 0 (a few columns: every subset is tried)."""
    rows = [[x / total for x in row] for row, total in zip(rows, totals, strict=True)]
    seconds = [t / total for t, total in zip(seconds, totals, strict=True)]
    width = len(rows[0])
    best, best_error = [0.0] * width, sum(t * t for t in seconds)
    for mask in range(1, 2**width):
        used = [c for c in range(width) if mask >> c & 1]
        found = _fit([[r[c] for c in used] for r in rows], seconds)
        if min(found) < 0:
            continue
        full = [0.0] * width
        for c, value in zip(used, found, strict=True):
            full[c] = value
        error = sum(
            (sum(f * x for f, x in zip(full, r, strict=True)) - t) ** 2
            for r, t in zip(rows, seconds, strict=True)
        )
        if error < best_error:
            best, best_error = full, error
    return best


class _Stop(Exception):
    """Ends a probe pass after its first blocks."""


def _first_blocks(lm: LoadedModel, work: Callable[[], object], blocks: int) -> Callable[[], None]:
    """`work` (one pass) cut after its first `blocks` blocks."""
    block_list = lm.adapter.block_list(lm.model)

    def stop(module, args) -> None:
        raise _Stop

    def cut() -> None:
        handle = block_list[blocks].register_forward_pre_hook(stop)
        try:
            work()
        except _Stop:
            pass
        finally:
            handle.remove()

    return cut


def _per_block(lm: LoadedModel, work: Callable[[], object], device: torch.device) -> float:
    """Seconds one block takes in `work` (one pass) at a long length, without running the whole
    model there: the first `LONG_BLOCKS[1]` blocks' time less the first `LONG_BLOCKS[0]`'s, so
    what runs before the blocks is not counted as theirs."""
    fewer, more = LONG_BLOCKS
    first = _timed(_first_blocks(lm, work, fewer), device)
    then = _timed(_first_blocks(lm, work, more), device, warm_up=False)
    return max(0.0, then - first) / (more - fewer)


def measure(lm: LoadedModel) -> Speed:
    """Time the probe on `lm` and fit its coefficients (see the module docstring): a one-token
    pass gives the cost of a call; plain passes and analyses of a few lengths, what remains per
    FLOP and per score; one block of each at the `LONG` lengths, what a score costs where
    scores are much of the work (times the layers)."""
    empty = torch.empty(0, dtype=torch.long)
    device = lm.device  # where the input goes (an offloaded weight sits on `meta`)
    context = lm.card.context_length
    plain = [t for t in PLAIN if t <= context] or [min(context, 8)]
    traced = [t for t in TRACED if t <= context] or plain[-1:]
    longs = sorted({min(t, context) for t in LONG if min(t, context) > max(plain)})
    if lm.layers <= 2 * LONG_BLOCKS[1]:
        longs = []  # a few blocks are the whole model: the short passes say enough

    def analysis(tokens: int) -> Callable[[], None]:
        if _ANALYSIS:
            return lambda: _ANALYSIS[0](lm, tokens)
        ids = _probe_ids(lm, tokens)

        def traced_pass() -> None:
            _, rec = run(lm, ids, score=True, logits_to_keep=empty)
            lm.unembed(rec.stack("residual", lm.layers)[:, 0, -1])

        return traced_pass

    plain_fit: tuple[list, list, list] = ([], [], [])  # rows, seconds, whole times
    traced_fit: tuple[list, list, list] = ([], [], [])

    def add(fit: tuple[list, list, list], row: list[float], seconds: float, whole: float) -> None:
        for column, value in zip(fit, (row, seconds, whole), strict=True):
            column.append(value)

    with torch.inference_mode():
        one = _probe_ids(lm, 1)
        call = _timed(lambda: run(lm, one, capture=False), device)
        for tokens in plain:
            ids = _probe_ids(lm, tokens)
            took = _timed(lambda ids=ids: run(lm, ids, capture=False), device)
            add(plain_fit, [linear_flop(lm, tokens - 1), scores(lm, tokens)], took - call, took)
        lens = readout_flop(lm, lm.layers)
        for tokens in traced:
            took = _timed(analysis(tokens), device)
            row = [1.0, linear_flop(lm, tokens - 1) + lens, scores(lm, tokens)]
            add(traced_fit, row, took - call, took)
        for tokens in longs:  # blocks alone: what FLOP and scores count
            ids = _probe_ids(lm, tokens)
            blocks = lm.layers * _per_block(lm, lambda ids=ids: run(lm, ids, capture=False), device)
            row = [linear_flop(lm, tokens), scores(lm, tokens)]
            add(plain_fit, row, blocks, blocks + call)
            blocks = lm.layers * _per_block(lm, analysis(tokens), device)
            add(traced_fit, [0.0, *row], blocks, blocks + call)
    per_flop, per_score = _nonnegative_fit(*plain_fit)
    if per_flop <= 0:  # the passes took no longer than a call: the matrix products are cheap
        per_flop = 1.0 / (ASSUMED_GFLOPS * 1e9)
    extra, per_traced_flop, per_traced_score = _nonnegative_fit(*traced_fit)
    return Speed(
        flops=1.0 / per_flop,
        score_flop=per_score / per_flop,
        call=call,
        traced_factor=max(1.0, per_traced_flop / per_flop),
        traced_score_flop=max(per_score, per_traced_score) / per_flop,
        analysis_call=extra,
        measured=True,
    )


def _cache_file(lm: LoadedModel) -> Path | None:
    if lm.revision == "in-memory":
        return None
    key = json.dumps(
        [VERSION, lm.model_id, lm.revision, str(lm.device), str(lm.dtype), lm.card.placement,
         torch.get_num_threads(), torch.__version__, platform.processor(), os.cpu_count()]
    )  # fmt: skip
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lmscope" / "speed" / (hashlib.sha256(key.encode()).hexdigest()[:32])


def _read(path: Path | None) -> Speed | None:
    try:
        return Speed(**json.loads(path.read_text())) if path is not None else None
    except (OSError, ValueError, TypeError):
        return None


def _write(path: Path | None, speed: Speed) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(asdict(speed)))
        temporary.replace(path)
    except OSError:
        pass  # a read-only cache: measure again next time


def speed_of(lm: LoadedModel) -> Speed:
    """This model's speed on this machine: measured once (memory, then disk), unless
    `LMSCOPE_GFLOPS` names an assumed speed."""
    raw = os.environ.get(SPEED_ENV, "").strip()
    if raw:
        return assumed(positive_setting(SPEED_ENV, raw))
    with _LOCK:
        if lm in _MEASURED:
            return _MEASURED[lm]
        path = _cache_file(lm)
        found = _read(path)
        if found is None:
            found = measure(lm)
            _write(path, found)
        _MEASURED[lm] = found
        return found
