"""What an experiment measures at the last position: one token's log-probability, or the logit
difference between two tokens ("logit(A) - logit(B)", the standard IOI metric
logit(" Mary") - logit(" John")).

A target typed without its leading space often names another token than the user meant: GPT-2
and SmolLM2 read "John" at the start of a word and " John" after a space as different tokens.
`token_notice` says so, so that the experiment never silently follows the other one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.errors import RequestError
from ..core.model import LoadedModel
from .inputs import target_id


@dataclass(frozen=True)
class Metric:
    """`logit(answer) - logit(wrong)` when `wrong` is set, else `log p(answer)`."""

    answer: int
    answer_text: str
    wrong: int | None = None
    wrong_text: str | None = None

    @property
    def contrastive(self) -> bool:
        return self.wrong is not None

    @property
    def label(self) -> str:
        """How views name the metric, e.g. `logit(' Mary') - logit(' John')`."""
        if self.wrong is None:
            return f"log p({self.answer_text!r})"
        return f"logit({self.answer_text!r}) - logit({self.wrong_text!r})"

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """The metric of last-position logits `(..., vocab)`, one value per leading index."""
        logits = logits.float()
        if self.wrong is None:
            return logits.log_softmax(-1)[..., self.answer]
        return logits[..., self.answer] - logits[..., self.wrong]

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "answer": {"id": self.answer, "text": self.answer_text},
            "wrong": None if self.wrong is None else {"id": self.wrong, "text": self.wrong_text},
        }


def token_notice(lm: LoadedModel, typed: object) -> str | None:
    """A warning when `typed` (a target as text) lacks a leading space and the spaced form is a
    different single token: the user most likely meant the word after a space."""
    if not isinstance(typed, str) or not typed or typed[0].isspace():
        return None
    bare = lm.tokenizer.encode(typed, add_special_tokens=False)
    spaced = lm.tokenizer.encode(" " + typed, add_special_tokens=False)
    if len(spaced) != 1 or bare == spaced:
        return None
    return (
        f"{typed!r} is not the token {' ' + typed!r}: the model reads a word after a space as "
        f"another token (id {spaced[0]}). Using {typed!r} as typed; write it with a leading "
        "space for the word in running text."
    )


def make_metric(
    lm: LoadedModel, answer: object, wrong: object = None, logits: torch.Tensor | None = None
) -> tuple[Metric, list[str]]:
    """The metric for `answer` (an id, a single-token text, or None for the top prediction of
    `logits`) and optionally `wrong` (same forms, None for a log-probability metric); with the
    notices a view must show (targets typed without their leading space)."""
    if answer is None and logits is None:
        raise RequestError("Name the answer token: 'answer' is required here.")
    top = logits if logits is not None else torch.zeros(lm.card.vocab_size)
    answer_id = target_id(lm, answer, top)
    wrong_id = None if wrong is None or wrong == "" else target_id(lm, wrong, top)
    if wrong_id is not None and wrong_id == answer_id:
        raise RequestError(
            f"The two tokens of 'logit(A) - logit(B)' are the same token ({lm.token_text(answer_id)!r});"
            " pick two different ones."
        )
    notices = [n for n in (token_notice(lm, answer), token_notice(lm, wrong)) if n]
    metric = Metric(
        answer=answer_id,
        answer_text=lm.token_text(answer_id),
        wrong=wrong_id,
        wrong_text=None if wrong_id is None else lm.token_text(wrong_id),
    )
    return metric, notices
