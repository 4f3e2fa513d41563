"""Generation from a prompt (greedy, sampling, beam search), with the alternatives at every step.

Greedy and sampling run our own cached decoding loop so that sampling draws from a per-request
`torch.Generator` (a seed repeats exactly and never touches the global RNG other requests see);
temperature, top-k and top-p are transformers' own logits warpers, applied in transformers' order.
Beam search is transformers' `generate` (deterministic). The alternatives shown at each step come
from one forward pass over the finished text: the model's own distribution (temperature 1).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from ..core.analysis import Prediction, top_predictions
from ..core.budget import check_generation
from ..core.errors import RequestError
from ..core.model import LoadedModel
from ..core.tokens import Token, display
from ..core.trace import HeadPatch, Recorder, pass_slot, recording, run
from .inputs import as_ids, prompt_ids

Method = Literal["greedy", "sample", "beam"]
METHODS: tuple[Method, ...] = ("greedy", "sample", "beam")
MAX_NEW_TOKENS = 50
MAX_BEAMS = 5
ALTERNATIVES = 5
TEMPERATURES = (0.01, 100.0)  # below, logits / T overflows float32; above, it is uniform anyway
MAX_SEED = 2**63 - 1  # torch.Generator takes 64 bits; negative seeds are refused, not wrapped


def _number(value: object, name: str, kind: type) -> int | float:
    ok = isinstance(value, int | float) if kind is float else isinstance(value, int)
    if ok and not isinstance(value, bool) and kind is float:
        try:
            value = float(value)  # an int too large for a float is refused, not an OverflowError
        except OverflowError:
            ok = False
        else:
            ok = math.isfinite(value)
    if not ok or isinstance(value, bool):
        raise RequestError(f"'{name}' must be {'a number' if kind is float else 'an integer'}.")
    return kind(value)


@dataclass(frozen=True)
class GenerationSettings:
    """How to pick each next token; checked on creation (a `RequestError` says what is wrong)."""

    method: Method = "greedy"
    max_new_tokens: int = 20
    beams: int = 1
    temperature: float = 1.0
    top_k: int = 0  # 0 = no top-k filter
    top_p: float = 1.0  # 1 = no nucleus filter
    seed: int | None = None  # sampling only; None = a fresh random seed, reported back

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise RequestError(
                f"'method' must be one of {', '.join(METHODS)}; got {self.method!r}."
            )
        n = _number(self.max_new_tokens, "max_new_tokens", int)
        if not 1 <= n <= MAX_NEW_TOKENS:
            raise RequestError(f"'max_new_tokens' must be between 1 and {MAX_NEW_TOKENS}, got {n}.")
        beams = _number(self.beams, "beams", int)
        if not 1 <= beams <= MAX_BEAMS:
            raise RequestError(f"'beams' must be between 1 and {MAX_BEAMS}, got {beams}.")
        low, high = TEMPERATURES
        if not low <= _number(self.temperature, "temperature", float) <= high:
            raise RequestError(
                f"'temperature' must be above 0, between {low} and {high:g}; got {self.temperature}."
            )
        if _number(self.top_k, "top_k", int) < 0:
            raise RequestError(f"'top_k' must be 0 (off) or more, got {self.top_k}.")
        if not 0 < _number(self.top_p, "top_p", float) <= 1:
            raise RequestError(f"'top_p' must be above 0 and at most 1, got {self.top_p}.")
        if self.seed is not None and not 0 <= _number(self.seed, "seed", int) <= MAX_SEED:
            raise RequestError(f"'seed' must be between 0 and 2**63 - 1, got {self.seed}.")

    @classmethod
    def from_request(cls, body: dict) -> GenerationSettings:
        """Settings from a JSON body; fields left out keep their defaults."""
        names = ("method", "max_new_tokens", "beams", "temperature", "top_k", "top_p", "seed")
        return cls(**{name: body[name] for name in names if name in body})

    def warpers(self) -> LogitsProcessorList:
        """Temperature, then top-k, then top-p: what turns logits into the sampling distribution."""
        warpers = LogitsProcessorList()
        if self.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k:
            warpers.append(TopKLogitsWarper(self.top_k))
        if self.top_p < 1.0:
            warpers.append(TopPLogitsWarper(self.top_p))
        return warpers

    def distribution(self, logits: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """What sampling draws from: softmax of the warped `logits` `(..., vocab)`, float32.

        The one place sampling's filtering happens: `generate` draws from it and the dashboard
        draws it, so the two cannot disagree. `ids` are the tokens so far (these warpers ignore
        them; transformers' interface asks for them).
        """
        logits = logits.float()
        rows = logits.reshape(-1, logits.shape[-1])
        seen = ids if ids is not None else torch.zeros(rows.shape[0], 0, dtype=torch.long)
        return self.warpers()(seen, rows).softmax(-1).reshape(logits.shape)

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "max_new_tokens": self.max_new_tokens,
            "beams": self.beams if self.method == "beam" else 1,
            **(
                {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}
                if self.method == "sample"
                else {}
            ),
        }


@dataclass(frozen=True)
class Step:
    """One generated token: the model's probability for it, its rank, and the top alternatives.

    `sampling_probability` is its probability under the warped (temperature/top-k/top-p)
    distribution it was drawn from; None unless sampling.
    """

    chosen: Prediction
    rank: int  # 0 = the model's most likely token
    alternatives: list[Prediction]
    sampling_probability: float | None = None

    def to_dict(self) -> dict:
        return {
            "chosen": self.chosen.to_dict(),
            "rank": self.rank,
            "alternatives": [p.to_dict() for p in self.alternatives],
            "sampling_probability": None
            if self.sampling_probability is None
            else round(self.sampling_probability, 6),
        }


@dataclass
class Generation:
    """The prompt's continuation, token by token."""

    prompt: str
    tokens: list[Token]
    notices: list[str]
    settings: GenerationSettings
    seed: int | None
    steps: list[Step]
    stopped: Literal["length", "end_of_text"]
    text: str = field(default="")

    @property
    def ids(self) -> list[int]:
        return [s.chosen.id for s in self.steps]

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt,
            "notices": self.notices,
            "prompt_tokens": len(self.tokens),
            "settings": self.settings.to_dict(),
            "seed": self.seed,
            "text": self.text,
            "display": display(self.text),
            "stopped": self.stopped,
            "steps": [s.to_dict() for s in self.steps],
        }


def _decode(
    lm: LoadedModel, ids: torch.Tensor, settings: GenerationSettings, generator: torch.Generator
) -> list[int]:
    """Greedy or sampled continuation of `ids` `(1, T)` with the KV cache; stops at end-of-text."""
    eos = lm.tokenizer.eos_token_id
    new: list[int] = []
    ids = ids.to(lm.device)
    cache, step, seq = None, ids, ids
    for _ in range(settings.max_new_tokens):
        with pass_slot():
            out = lm.model(input_ids=step, cache=cache, use_cache=True, logits_to_keep=1)
        cache, logits = out.cache, out.logits[:, -1].float()
        if settings.method == "greedy":
            token = logits.argmax(-1, keepdim=True)
        else:
            # drawn on the CPU, whatever the device: a seed gives the same draw everywhere
            probs = settings.distribution(logits, seq).cpu()
            token = torch.multinomial(probs, 1, generator=generator).to(lm.device)
        new.append(int(token))
        if new[-1] == eos:
            break
        step = token
        seq = torch.cat([seq, token], dim=-1)
    return new


def _beam(lm: LoadedModel, ids: torch.Tensor, settings: GenerationSettings) -> list[int]:
    """transformers' beam search; the best beam's new tokens."""
    eos = lm.tokenizer.eos_token_id
    ids = ids.to(lm.device)
    with pass_slot():
        out = lm.model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            num_beams=settings.beams,
            do_sample=False,
            max_new_tokens=settings.max_new_tokens,
            pad_token_id=lm.tokenizer.pad_token_id
            if lm.tokenizer.pad_token_id is not None
            else eos,
        )
    new = out[0, ids.shape[1] :].tolist()
    if eos in new:  # finished beams are padded with end-of-text after their end
        new = new[: new.index(eos) + 1]
    return new


def generate(
    lm: LoadedModel,
    prompt: str,
    settings: GenerationSettings | None = None,
    *,
    patches: dict[int, HeadPatch] | None = None,
    alternatives: int = ALTERNATIVES,
) -> Generation:
    """Continue the prompt; `patches` (from `ablation.head_patches`) generate with heads ablated."""
    settings = settings or GenerationSettings()
    tokens, notices = prompt_ids(lm, prompt, reserve=settings.max_new_tokens)
    beams = settings.beams if settings.method == "beam" else 1
    check_generation(lm, len(tokens), settings.max_new_tokens, beams)
    ids = as_ids(tokens)
    seed = None
    if settings.method == "sample":
        seed = settings.seed if settings.seed is not None else secrets.randbelow(2**31)
    generator = torch.Generator().manual_seed(seed or 0)
    with torch.inference_mode(), recording(Recorder(capture=False, patches=patches or {})):
        if settings.method == "beam":
            new = _beam(lm, ids, settings)
        else:
            new = _decode(lm, ids, settings, generator)
    full = torch.cat([ids, torch.tensor([new])], dim=-1)
    with torch.inference_mode():
        logits, _ = run(lm, full[:, :-1], capture=False, patches=patches, logits_to_keep=len(new))
        logits = logits[0].float()
        sampled = settings.distribution(logits)
    top = top_predictions(lm, logits, alternatives)
    probs = logits.softmax(-1)
    steps = []
    for i, token in enumerate(new):
        p = probs[i, token]
        steps.append(
            Step(
                chosen=Prediction(
                    token,
                    lm.token_text(token),
                    float(p),
                    float(logits[i, token]),
                    lm.token_display(token),
                ),
                rank=int((probs[i] > p).sum()),
                alternatives=top[i],
                sampling_probability=float(sampled[i, token])
                if settings.method == "sample"
                else None,
            )
        )
    eos = lm.tokenizer.eos_token_id
    return Generation(
        prompt=prompt,
        tokens=tokens,
        notices=notices,
        settings=settings,
        seed=seed,
        steps=steps,
        stopped="end_of_text" if new and new[-1] == eos else "length",
        text=lm.tokenizer.decode(new),
    )
