"""Name movers (Wang et al. 2022, the indirect-object circuit): heads that, from the last token,
read the name that appeared once and copy it to the end. Given the heads an ablation scan ranks
first, `name_movers` says which of them read the name, and, if none does, which heads do and what
removing those does."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.analysis import Analysis
from .ablation import ablate

READS_NAME = 0.3  # a head giving the name this share of the last token's attention reads it
CANDIDATES = 3  # heads that read the name most, ablated when the scan's heads do not read it


def name_readers(analysis: Analysis, name_id: int) -> list[tuple[float, int, int]]:
    """Every head's attention from the last token to the earlier copies of the token `name_id`,
    as (share, layer, head), most first (empty when the name is not in the prompt)."""
    last = len(analysis.tokens) - 1
    positions = [t.index for t in analysis.tokens[:last] if t.id == name_id]
    if not positions:
        return []
    readers = []
    for layer in range(analysis.lm.card.layers):
        rows = analysis.layer_patterns(layer, slice(last, None))[:, 0]  # (heads, T)
        readers += [(float(w), layer, h) for h, w in enumerate(rows[:, positions].sum(-1))]
    return sorted(readers, reverse=True)


@dataclass(frozen=True)
class NameMovers:
    """What the heads `heads` do with the name: the share each gives it from the last token;
    `movers` read it (>= READS_NAME), `others` do not; when none does, `candidates` are the heads
    that read it most and `candidates_p` the name's probability with and without them."""

    shares: dict[tuple[int, int], float]
    movers: list[list[int]]
    others: list[list[int]]
    candidates: list[list[int]]
    candidates_p: tuple[float, float] | None


def name_movers(analysis: Analysis, name_id: int, heads: list[list[int]]) -> NameMovers | None:
    """Which of `heads` read the name `name_id` from the last token (None when the name is not in
    the prompt); if none does, the heads that read it most, and the effect of removing them."""
    readers = name_readers(analysis, name_id)
    if not readers:
        return None
    shares = {(layer, head): w for w, layer, head in readers}
    movers = [h for h in heads if shares[tuple(h)] >= READS_NAME]
    others = [h for h in heads if shares[tuple(h)] < READS_NAME]
    candidates, probability = [], None
    if not movers:
        candidates = [[layer, head] for w, layer, head in readers[:CANDIDATES] if w >= READS_NAME]
        if candidates:
            removed = ablate(analysis.lm, analysis.prompt, candidates, target=name_id, new_tokens=0)
            probability = removed.target_probability
    return NameMovers(shares, movers, others, candidates, probability)
