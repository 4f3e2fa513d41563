"""The induction experiment: a random word sequence, then the same sequence again. Nothing in
language predicts the second copy; only copying from the first does, which is what an induction
head is for. `second_copy_loss` measures how much harder the second copy gets without some heads.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import torch

from ..core.model import LoadedModel
from ..core.trace import run
from .ablation import head_patches
from .inputs import as_ids, prompt_ids

SEQUENCE = 12  # random words, then the same words again without the last one
_WORD = re.compile(r"^ [a-z]{4,9}$")
_SEQUENCES: dict[str, tuple[int, ...]] = {}


def induction_sequence(lm: LoadedModel, length: int = SEQUENCE) -> tuple[int, ...]:
    """`length` random single-token words of this vocabulary (fixed per model, so a learner and a
    test see the same prompt), each a token that reads back as itself."""
    key = f"{lm.model_id}:{length}"
    if key in _SEQUENCES:
        return _SEQUENCES[key]
    rng = random.Random(f"lmscope-induction-{lm.model_id}")
    tokenizer, chosen = lm.tokenizer, []
    for _ in range(50_000):
        token = rng.randrange(lm.card.vocab_size)
        text = tokenizer.decode([token])
        if token in chosen or not _WORD.match(text):
            continue
        if tokenizer(text, add_special_tokens=False)["input_ids"] != [token]:
            continue
        chosen.append(token)
        if len(chosen) == length:
            break
    _SEQUENCES[key] = tuple(chosen)
    return _SEQUENCES[key]


def induction_prompt(lm: LoadedModel, length: int = SEQUENCE) -> str:
    """The random word sequence, then the same sequence again without its last word."""
    words = [lm.tokenizer.decode([t]) for t in induction_sequence(lm, length)]
    return "".join(words) + "".join(words[:-1])


@dataclass(frozen=True)
class SecondCopyLoss:
    """Mean next-token loss (nats) over the second copy after its first word, with every head
    (`before`) and without the heads removed (`after`); and, with every head, over the first copy
    after its first word, which nothing predicts (`first_copy`, for scale)."""

    before: float
    after: float
    first_copy: float


def second_copy_loss(lm: LoadedModel, prompt: str, heads: list[list[int]]) -> SecondCopyLoss:
    """The losses of an induction prompt with every head and with `heads` zero-ablated."""
    ids = as_ids(prompt_ids(lm, prompt)[0])
    half = (ids.shape[1] + 1) // 2
    losses = []
    for patches in (None, head_patches(lm, [tuple(h) for h in heads])):
        with torch.no_grad():
            logits, _ = run(lm, ids, capture=False, patches=patches, logits_to_keep=ids.shape[1])
        loss = -logits[0, :-1].float().log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]
        losses.append(loss)  # loss[i]: of token i + 1
    return SecondCopyLoss(
        float(losses[0][half:].mean()),
        float(losses[1][half:].mean()),
        float(losses[0][: half - 1].mean()),
    )
