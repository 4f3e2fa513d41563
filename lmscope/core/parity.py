"""The parity check every load runs: lmscope's traced pass against the model's own forward.

One short probe (the first `PROBE_TOKENS` tokens of the head profile's probe text) runs twice:
through `trace.run` as an analysis runs it (lmscope's attention, every hook recording, heads
scored in the pass) with the logits read off the recorded stream by `LoadedModel.unembed`, as the
logit lens and the predictions read them; and through the model's own untouched forward (its eager
attention, no recorder active). The largest logit difference goes on the card; beyond the
dtype's tolerance it is a warning that every front-end shows: an adapter that does not fit the
model (a missed soft-cap, a wrong final norm) cannot pass silently.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from . import attention
from .card import ModelCard
from .devices import tolerance
from .model import LoadedModel
from .trace import run

PROBE_TOKENS = 12
PROBE_TEXT = Path(__file__).resolve().parent / "probe_text.txt"


@dataclass(frozen=True)
class Parity:
    """How far lmscope's traced logits are from the model's own on the probe."""

    error: float  # the largest |logit difference| over the vocabulary
    scale: float  # the largest |logit| of the model's own pass
    tolerance: float  # allowed error / max(scale, 1): the dtype's (devices.TOLERANCE)

    @property
    def ok(self) -> bool:
        return self.error <= self.tolerance * max(self.scale, 1.0)

    def sentence(self) -> str:
        if self.ok and self.error == 0:
            return "lmscope's trace reproduces this model's logits exactly (on the load probe)"
        if self.ok:
            return f"lmscope's trace reproduces this model's logits to {self.error:.0e}"
        return (
            f"lmscope's trace does NOT reproduce this model's logits: they differ by up to "
            f"{self.error:.3g} (the largest logit is {self.scale:.3g}; rounding allows "
            f"{self.tolerance:.0e} of it). What lmscope shows for this model may be wrong: its "
            "family adapter does not fit it."
        )


def probe_ids(lm: LoadedModel) -> torch.Tensor:
    """`(1, T)`: the probe text's first tokens (ids the model's vocabulary holds)."""
    text = PROBE_TEXT.read_text(encoding="utf-8")[:300]  # short: no tokenizer length warning
    ids = [i for i in lm.tokenizer(text)["input_ids"] if i < lm.card.vocab_size]
    size = min(PROBE_TOKENS, lm.card.context_length)
    ids = (ids or list(range(size)))[:size]
    return lm.ids([ids])


def check(lm: LoadedModel) -> Parity:
    """Run the probe both ways and compare the logits at its last position (every position's
    stream flows into it; a read-out as wide as Gemma's 262k vocabulary costs ~0.1 s a row)."""
    ids = probe_ids(lm)
    with torch.inference_mode():
        _, rec = run(lm, ids, score=True, logits_to_keep=torch.empty(0, dtype=torch.long))
        traced = lm.unembed(rec.stack("residual", lm.layers)[-1, 0, -1]).float()
        with attention.eager(lm.model):
            own = lm.model(input_ids=ids, logits_to_keep=1).logits[0, -1].float()
    return Parity(
        error=float((traced - own).abs().max()),
        scale=float(own.abs().max()),
        tolerance=tolerance(lm.dtype),
    )


def with_parity(card: ModelCard, parity: Parity) -> ModelCard:
    """The card with the check's result on it."""
    return replace(card, parity=parity.sentence(), parity_error=parity.error, parity_ok=parity.ok)
