"""Steering: add a vector to the residual stream at one layer and watch the prediction move.

The vector enters the stream before block `layer` (`blocks.{layer}.hook_resid_pre`), at every
position or from one position on, times a coefficient. It is either the difference of two
prompts' mean activations there ("activation addition", Turner et al. 2023: mean over each
prompt's positions of A minus that of B, in the stream's own units, not normalized) or the unit
direction of one token's unembedding column (normalized to length 1, so the coefficient is the
length added). Everything goes through `trace.steering`, per request: the shared model is never
changed, and generation is steered at every new token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ..core.budget import check_analysis, check_steering
from ..core.errors import PromptError, RequestError
from ..core.model import LoadedModel
from ..core.tokens import Token
from ..core.trace import Steer, run, steering
from .ablation import Compared, significant
from .attribution import unembedding_column
from .generation import MAX_NEW_TOKENS, Generation, GenerationSettings, generate
from .inputs import as_ids, prompt_ids, target_id
from .metric import token_notice

Kind = Literal["prompts", "token"]
TOP_K = 10
MAX_COEFFICIENT = 1e4  # beyond this any stream is swamped; a typo more likely than an experiment
STEER_TOKENS = 20  # greedy continuation shown with and without the vector
# The defaults, chosen by measurement (benchmarks/results/steering-defaults.md): Love - Hate added
# 30% of the way in, times 0.5 (SmolLM2: layer 9 of 30, 0.75-0.86 times the stream's length),
# moves the prediction (' Mary' 92% -> ' a'; KL 3-5 nats) and keeps the text readable; layer 0
# and coefficients >= 1 swamped the stream (2-50 times its length) into newlines or one token
DEPTH = 0.3
COEFFICIENT = 0.5


@dataclass
class SteeringVector:
    """The direction added (before the coefficient), where it comes from, and its length."""

    kind: Kind
    layer: int
    vector: torch.Tensor  # (d,)
    source: list[str]  # the two prompts, or the token's text
    token: int | None = None
    notices: tuple[str, ...] = ()

    @property
    def normalized(self) -> bool:
        return self.kind == "token"

    @property
    def description(self) -> str:
        if self.kind == "token":
            return (
                f"the unembedding direction of {self.source[0]!r} (token {self.token}), "
                "normalized to length 1"
            )
        return (
            f"mean activation of {self.source[0]!r} minus that of {self.source[1]!r} where it is "
            "added (means over each prompt's positions; not normalized)"
        )

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "layer": self.layer,
            "source": self.source,
            "token": self.token,
            "normalized": self.normalized,
            "norm": significant(float(self.vector.norm())),
            "description": self.description,
        }


def check_layer(lm: LoadedModel, layer: object) -> int:
    if not isinstance(layer, int) or isinstance(layer, bool):
        raise RequestError(f"'layer' must be an integer, got {layer!r}.")
    if not 0 <= layer < lm.layers:
        raise RequestError(
            f"Layer {layer} does not exist: {lm.card.name} has layers 0 to {lm.layers - 1} "
            "(the vector enters the stream before that layer)."
        )
    return layer


def default_layer(lm: LoadedModel) -> int:
    """The layer steered when none is given: `DEPTH` of the way through the model."""
    return min(lm.layers - 1, round(DEPTH * lm.layers))


def check_coefficient(coefficient: object) -> float:
    ok = isinstance(coefficient, int | float) and not isinstance(coefficient, bool)
    if not ok or not math.isfinite(coefficient) or abs(coefficient) > MAX_COEFFICIENT:
        raise RequestError(
            f"'coefficient' must be a number from {-MAX_COEFFICIENT:g} to {MAX_COEFFICIENT:g}, "
            f"got {coefficient!r}."
        )
    return float(coefficient)


def mean_activation(lm: LoadedModel, prompt: object, layer: int) -> torch.Tensor:
    """The residual stream entering block `layer`, averaged over the prompt's positions `(d,)`."""
    tokens, _ = prompt_ids(lm, prompt)
    check_analysis(lm, len(tokens))  # one traced pass, as an analysis of that prompt
    with torch.inference_mode():
        _, rec = run(lm, as_ids(tokens), keep_keys=False, keep_sublayer_outputs=False)
    return rec.acts[f"blocks.{layer}.hook_resid_pre"][0].float().mean(0)


def vector_prompt_lengths(lm: LoadedModel, prompts: object) -> list[int]:
    """The token counts of the prompts a vector would be made from (none where they are not two
    usable prompts: `steering_vector` then says what is wrong)."""
    if not isinstance(prompts, list | tuple) or len(prompts) != 2:
        return []
    try:
        return [len(prompt_ids(lm, text)[0]) for text in prompts]
    except PromptError:
        return []


def steering_vector(
    lm: LoadedModel, layer: object, *, prompts: object = None, token: object = None
) -> SteeringVector:
    """The direction to add at `layer`: from two prompts (`prompts=[A, B]`, mean of A - mean of
    B) or from one token (`token`, its unit unembedding direction); exactly one of the two."""
    layer = check_layer(lm, layer)
    if (prompts is None) == (token is None or token == ""):
        raise RequestError(
            "Steer either from two prompts ('from_prompts': [A, B]) or from one token "
            "('token'), not both and not neither."
        )
    if prompts is not None:
        if not isinstance(prompts, list | tuple) or len(prompts) != 2:
            raise RequestError(
                '\'from_prompts\' must be two prompts, e.g. ["Love", "Hate"]: the vector is '
                "the mean activation of the first minus that of the second."
            )
        means = []
        for which, text in zip(("first", "second"), prompts, strict=True):
            try:
                means.append(mean_activation(lm, text, layer))
            except PromptError as error:
                raise PromptError(f"The {which} steering prompt: {error}") from None
        a, b = means
        return SteeringVector("prompts", layer, a - b, [str(p) for p in prompts])
    ident = target_id(lm, token, torch.zeros(lm.card.vocab_size))
    _, u, _ = unembedding_column(lm, ident)
    notice = token_notice(lm, token)
    return SteeringVector(
        "token",
        layer,
        u / u.norm().clamp_min(1e-12),
        [lm.token_text(ident)],
        token=ident,
        notices=(notice,) if notice else (),
    )


@dataclass
class Steering(Compared):
    """The next-token distribution and a greedy continuation, without and with the vector."""

    lm: LoadedModel
    prompt: str
    tokens: list[Token]
    notices: list[str]
    vector: SteeringVector
    coefficient: float
    position: int | None  # steered from this position on; None = every position
    stream_norm: float  # mean length of the stream there on this prompt, for scale
    before: torch.Tensor  # logits (vocab,)
    after: torch.Tensor
    generation_before: Generation | None
    generation_after: Generation | None

    def to_dict(self) -> dict:
        added = abs(self.coefficient) * float(self.vector.vector.norm())
        return {
            "prompt": self.prompt,
            "notices": self.notices,
            "vector": self.vector.to_dict(),
            "layer": self.vector.layer,
            "coefficient": self.coefficient,
            "position": self.position,
            "added_norm": significant(added),
            "stream_norm": significant(self.stream_norm),
            **self.compared(),
        }


def steer(
    lm: LoadedModel,
    prompt: str,
    layer: object = None,
    coefficient: object = COEFFICIENT,
    *,
    prompts: object = None,
    token: object = None,
    position: object = None,
    new_tokens: int = STEER_TOKENS,
) -> Steering:
    """Add `coefficient` x the steering vector (see `steering_vector`) to the stream entering
    `layer` (None: `default_layer`), from prompt position `position` on (None: every position;
    generated tokens always); compare the next token and a greedy continuation of `new_tokens`
    without and with it."""
    coefficient = check_coefficient(coefficient)
    layer = default_layer(lm) if layer is None else layer
    if (
        not isinstance(new_tokens, int)
        or isinstance(new_tokens, bool)
        or not (0 <= new_tokens <= MAX_NEW_TOKENS)
    ):
        raise RequestError(
            f"'new_tokens' must be an integer from 0 to {MAX_NEW_TOKENS}, got {new_tokens!r}."
        )
    settings = GenerationSettings(max_new_tokens=new_tokens) if new_tokens else None
    tokens, notices = prompt_ids(lm, prompt, reserve=new_tokens)
    if position is not None and (
        not isinstance(position, int)
        or isinstance(position, bool)
        or not 0 <= position < len(tokens)
    ):
        raise RequestError(
            f"'position' must be a token position from 0 to {len(tokens) - 1} (the prompt has "
            f"{len(tokens)} tokens), or left out for every position; got {position!r}."
        )
    check_steering(lm, len(tokens), new_tokens, vector_prompt_lengths(lm, prompts))
    vector = steering_vector(lm, layer, prompts=prompts, token=token)
    ids = as_ids(tokens)
    change = Steer(vector.layer, coefficient * vector.vector, position or 0)
    with torch.inference_mode():
        before, rec = run(lm, ids, keep_keys=False, keep_sublayer_outputs=False)
        stream = rec.acts[f"blocks.{vector.layer}.hook_resid_pre"][0].float().norm(dim=-1)
        with steering(change):
            after, _ = run(lm, ids, capture=False)
    with steering(change):
        generation_after = generate(lm, prompt, settings) if settings else None
    return Steering(
        lm=lm,
        prompt=prompt,
        tokens=tokens,
        notices=notices + list(vector.notices),
        vector=vector,
        coefficient=coefficient,
        position=position,
        stream_norm=float(stream.mean()),
        before=before[0, -1].float(),
        after=after[0, -1].float(),
        generation_before=generate(lm, prompt, settings) if settings else None,
        generation_after=generation_after,
    )
