"""What every experiment reads from a request: the prompt as ids, heads to touch, a target token."""

from __future__ import annotations

import torch

from ..core.analysis import check_prompt, fit_context
from ..core.errors import PromptError, RequestError
from ..core.heads import head_name
from ..core.model import LoadedModel
from ..core.tokens import Token, tokenize

Head = tuple[int, int]


def prompt_ids(
    lm: LoadedModel, prompt: object, reserve: int = 0, what: str = "prompt"
) -> tuple[list[Token], list[str]]:
    """The prompt's tokens as the model reads them, leaving `reserve` positions free for
    generation; a refusal names the prompt `what`."""
    check_prompt(prompt, what)
    tokens, notices = fit_context(tokenize(lm.tokenizer, prompt), lm.card.context_length - reserve)
    if not tokens:
        raise PromptError(f"The {what} gave no tokens to analyze.")
    return tokens, notices


def choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """`value` if it is one of `allowed`, else a `RequestError` naming them."""
    if value not in allowed:
        raise RequestError(f"'{name}' must be one of {', '.join(allowed)}; got {value!r}.")
    return value  # type: ignore[return-value]


def check_count(check: object) -> int:
    """How many of AtP's strongest cells to measure exactly: a whole number, 0 or more."""
    if not isinstance(check, int) or isinstance(check, bool) or check < 0:
        raise RequestError(f"'check' must be a whole number of cells (0 or more), got {check!r}.")
    return check


def as_ids(tokens: list[Token]) -> torch.Tensor:
    """`(1, T)` input ids."""
    return torch.tensor([[t.id for t in tokens]])


def check_heads(lm: LoadedModel, heads: object) -> list[Head]:
    """Heads as `(layer, head)` pairs, each in range, duplicates dropped; else a `RequestError`."""
    if not isinstance(heads, list | tuple):
        raise RequestError("'heads' must be a list of [layer, head] pairs, e.g. [[0, 1], [3, 5]].")
    checked: list[Head] = []
    for item in heads:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)
        ):
            raise RequestError(f"Each head must be a [layer, head] pair of integers, got {item!r}.")
        layer, head = item
        if not 0 <= layer < lm.layers:
            raise RequestError(
                f"Layer {layer} does not exist: {lm.card.name} has layers 0 to {lm.layers - 1}."
            )
        if not 0 <= head < lm.heads:
            raise RequestError(
                f"Head {head} does not exist: each layer of {lm.card.name} has heads 0 to "
                f"{lm.heads - 1} (asked for {head_name(layer, head)})."
            )
        if (layer, head) not in checked:
            checked.append((layer, head))
    return checked


def parse_heads(text: str) -> list[Head]:
    """'0.1,3.5' (LAYER.HEAD, comma separated) as pairs; ranges are checked by `check_heads`."""
    heads = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        layer, sep, head = part.partition(".")
        if not sep or not layer.isdigit() or not head.isdigit():
            raise RequestError(f"Heads are written LAYER.HEAD, e.g. 0.1,3.5; got {part!r}.")
        heads.append((int(layer), int(head)))
    return heads


def target_id(lm: LoadedModel, target: object, logits: torch.Tensor) -> int:
    """The token an experiment follows: None = the top prediction of `logits`, an id, or its text."""
    vocab = lm.card.vocab_size
    if target is None:
        return int(logits.argmax())
    if isinstance(target, int) and not isinstance(target, bool):
        if not 0 <= target < vocab:
            raise RequestError(f"Token id {target} is outside the vocabulary (0 to {vocab - 1}).")
        return target
    if isinstance(target, str) and target:
        ids = lm.tokenizer.encode(target, add_special_tokens=False)
        if len(ids) != 1:
            raise RequestError(
                f"The target {target!r} is {len(ids)} tokens for this model; pick a single token "
                "(for GPT-2, words usually start with a space: ' Paris')."
            )
        return ids[0]
    raise RequestError("'target' must be a token id, a single-token text, or null for the top one.")
