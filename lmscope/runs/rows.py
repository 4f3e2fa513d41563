"""A dataset row as an experiment reads it, or the reason it is skipped.

A row is skipped (its number and reason go to the run's report; the run goes on) when a column the
experiment needs is missing or empty, the prompt cannot be analyzed (empty, not text, ...), a
pair's prompts have different token counts, or an answer is not one token of the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..core.errors import LmscopeError, RequestError
from ..core.model import LoadedModel
from ..core.tokens import Token
from ..experiments.inputs import prompt_ids, target_id
from ..experiments.patching import pair_prompts


class RowError(RequestError):
    """This row cannot be measured; the message says why."""


@dataclass
class Item:
    """One row, tokenized: the prompt (and the corrupted one for a pair) and its targets."""

    row: int
    prompt: str
    tokens: list[Token]
    notices: list[str]
    answer: object = None  # text or id; None = the model's top prediction
    wrong: object = None
    corrupt: str | None = None
    corrupt_tokens: list[Token] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.tokens)

    @property
    def targets(self) -> tuple[object, object]:
        return self.answer, self.wrong


def make_item(lm: LoadedModel, row: int, fields: dict[str, object], *, pair: bool) -> Item:
    """The row as an `Item`, or a `RowError` saying why it cannot be measured."""
    needed = ("prompt", "corrupt") if pair else ("prompt",)
    for name in needed:
        if fields.get(name) is None:
            raise RowError(f"missing column '{name}'")
    answer, wrong = (_target(lm, fields.get(name), name) for name in ("answer", "wrong"))
    tokens, notices = _tokens(lm, fields["prompt"], "prompt")
    item = Item(row, fields["prompt"], tokens, notices, answer, wrong)  # type: ignore[arg-type]
    if pair:
        _tokens(lm, fields["corrupt"], "corrupt")
        try:
            made = pair_prompts(lm, fields["prompt"], fields["corrupt"])
        except LmscopeError as error:
            raise RowError(str(error)) from None
        item.corrupt, item.corrupt_tokens = fields["corrupt"], made.corrupt  # type: ignore[assignment]
        item.notices = made.notices
    return item


def _tokens(lm: LoadedModel, text: object, name: str) -> tuple[list[Token], list[str]]:
    try:
        return prompt_ids(lm, text)
    except LmscopeError as error:
        raise RowError(f"'{name}': {error}") from None


def _target(lm: LoadedModel, value: object, name: str) -> object:
    """A target as given (text or token id), checked to be one token; None when absent or empty."""
    if value is None or value == "":
        return None
    try:
        target_id(lm, value, torch.zeros(0))
    except RequestError as error:
        raise RowError(f"'{name}': {error}") from None
    return value
