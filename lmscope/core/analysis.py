"""Analyze a prompt: one traced forward pass, and the object every view reads from.

Heavy tensors (residual stream, each layer's queries and keys) stay in the `Analysis` on the
server; `to_dict()` is the compact document the CLI prints and the browser receives. No attention
pattern is held: head scores are computed during the pass, and a head's or a layer's pattern is
rebuilt from its queries and keys when a view asks for it (`pattern`, `layer_patterns`,
`pattern_overview`), exactly as the model's eager attention computes it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from . import speed
from .attention import ROW_BLOCK, LayerKeys
from .budget import check_analysis
from .errors import PromptError
from .heads import HeadReport, chance_scores_per_row, windowed_chance
from .model import LoadedModel
from .tokens import Token, is_split, piece_bytes, tokenize
from .trace import Recorder, run

MAX_PROMPT_CHARS = 200_000
TOP_K = 10
OVERVIEW = 512  # a head's overview is max-pooled to at most this many rows and columns
ALL_PATTERNS_BYTES = 1 << 30  # `Analysis.attention` (every pattern at once) refuses more than this
LENS_K = 5  # the logit lens's guesses per layer, read at the last position during the analysis
NO_POSITIONS = torch.empty(0, dtype=torch.long)  # `logits_to_keep` that unembeds nothing


@dataclass(frozen=True)
class Prediction:
    """One candidate next token."""

    id: int
    text: str
    probability: float
    logit: float
    display: str  # as the token is shown everywhere (`tokens.token_display`)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "text": self.text,
            "display": self.display,
            "probability": float(f"{self.probability:.6g}"),  # significant digits, not decimals
            "logit": round(self.logit, 4),
        }


def check_prompt(prompt: object, what: str = "prompt") -> str:
    """The prompt if it can be analyzed, else a `PromptError` saying why (naming it `what`: a
    second prompt, e.g. "corrupted prompt", is named as the page names it)."""
    if not isinstance(prompt, str):
        raise PromptError(f"The {what} must be text.")
    if not prompt:
        raise PromptError(f"The {what} is empty: type some text to analyze.")
    if not prompt.strip():
        raise PromptError(f"The {what} is only whitespace: type some text to analyze.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PromptError(
            f"The {what} has {len(prompt):,} characters; lmscope reads at most "
            f"{MAX_PROMPT_CHARS:,}."
        )
    for index, char in enumerate(prompt):
        if "\ud800" <= char <= "\udfff":
            raise PromptError(
                f"The {what} is not valid Unicode: a lone surrogate U+{ord(char):04X} at character "
                f"{index}."
            )
    return prompt


def fit_context(tokens: list[Token], context: int) -> tuple[list[Token], list[str]]:
    """Keep the last `context` tokens of a prompt longer than the model reads, with a notice."""
    if len(tokens) <= context:
        return tokens, []
    kept = tokens[-context:]
    notice = (
        f"The prompt is {len(tokens):,} tokens; this model reads at most {context:,}, so the first "
        f"{len(tokens) - context:,} tokens were dropped and the analysis starts at character "
        f"{kept[0].start:,}."
    )
    renumbered = [dataclasses.replace(t, index=i) for i, t in enumerate(kept)]
    return renumbered, [notice]


def top_predictions(lm: LoadedModel, logits: torch.Tensor, k: int) -> list[list[Prediction]]:
    """The k most likely tokens of each row of `logits` `(rows, vocab)`, most likely first."""
    probs = logits.float().softmax(-1)
    top = probs.topk(min(k, probs.shape[-1]), dim=-1)
    chosen = logits.float().gather(-1, top.indices).tolist()  # one copy from the device
    return [
        [
            Prediction(i, lm.token_text(i), p, value, lm.token_display(i))
            for p, i, value in zip(
                top.values[row].tolist(), top.indices[row].tolist(), chosen[row], strict=True
            )
        ]
        for row in range(logits.shape[0])
    ]


@dataclass(eq=False)
class Analysis:
    """Everything one forward pass showed about a prompt, batch axis dropped. Tensors stay on the
    device that made them (`lm.device`; a view moves what it sends), the stream and z in the
    model's dtype, the norms, the embeddings, the logits and the rebuilt patterns in float32.

    residual[0] is the embedding sum, residual[l + 1] the stream after layer l. What each sublayer
    wrote into the stream: `attn_norms` and `mlp_norms` `(layers, T)`, its norms at every position,
    kept from the pass; the `attn_out` property `(layers, T, d)`, computed on request from z;
    `mlp_last` `(layers, d)`, each MLP's output at the last position (what attribution splits).
    z `(layers, T, heads, d_head)` is each head's output before the output projection; keys[l]
    rebuilds layer l's attention patterns (see `attention.LayerKeys`: queries and keys as the model
    used them, batch axis of 1).
    """

    lm: LoadedModel
    prompt: str
    tokens: list[Token]
    notices: list[str]
    token_embeddings: torch.Tensor
    position_embeddings: torch.Tensor | None
    keys: list[LayerKeys]
    residual: torch.Tensor
    attn_norms: torch.Tensor
    mlp_norms: torch.Tensor
    mlp_last: torch.Tensor
    z: torch.Tensor
    logits: torch.Tensor  # (vocab,) at the last position
    heads: HeadReport
    # the last position's logit lens, read during the pass; other positions are read on request
    # and not kept, so a stored analysis never grows after it is stored
    last_lens: list[list[Prediction]] = field(default_factory=list, repr=False)

    @property
    def ids(self) -> torch.Tensor:
        return torch.tensor([t.id for t in self.tokens])

    @property
    def probabilities(self) -> torch.Tensor:
        return self.logits.softmax(-1)

    @property
    def heads_per_layer(self) -> int:
        return self.keys[0].heads

    def pattern(self, layer: int, head: int, rows: slice | None = None) -> torch.Tensor:
        """One head's attention `(rows, T)` (all rows by default), rebuilt on request."""
        start, stop, _ = (rows or slice(None)).indices(len(self.tokens))
        return self.keys[layer].rows(start, max(start, stop), heads=[head])[0, 0]

    def layer_patterns(self, layer: int, rows: slice | None = None) -> torch.Tensor:
        """Every head's attention in one layer: `(heads, rows, T)`, rebuilt on request."""
        start, stop, _ = (rows or slice(None)).indices(len(self.tokens))
        return self.keys[layer].rows(start, max(start, stop))[0]

    def pattern_overview(self, layer: int, head: int, size: int = OVERVIEW) -> torch.Tensor:
        """One head's pattern max-pooled to at most `size` x `size`: `(n, n)` with n = ceil(T / f),
        each cell the largest weight of its f x f tile (f = ceil(T / size)); built a block of rows
        at a time, never the whole T x T."""
        tokens = len(self.tokens)
        factor = math.ceil(tokens / size)
        cells = math.ceil(tokens / factor)
        out = torch.zeros(cells, cells, device=self.keys[layer].query.device)
        step = factor * max(1, ROW_BLOCK // factor)
        for start in range(0, tokens, step):
            stop = min(tokens, start + step)
            block = self.keys[layer].rows(start, stop, keys=stop, heads=[head])[0, 0]
            rows = math.ceil((stop - start) / factor) * factor
            block = F.pad(block, (0, cells * factor - stop, 0, rows - (stop - start)))
            pooled = block.reshape(rows // factor, factor, cells, factor).amax(dim=(1, 3))
            out[start // factor : start // factor + pooled.shape[0]] = pooled
        return out

    @property
    def attn_out(self) -> torch.Tensor:
        """What each attention sublayer wrote, `(layers, T, d)`: the model's own output projection
        (and any norm after the sublayer) applied to z, computed on request (the pass keeps z,
        not this second copy of its size)."""
        with torch.inference_mode():
            return torch.stack(  # each layer's on the analysis's device (a device map spreads them)
                [
                    self.lm.attention_writes(layer, z.flatten(-2)).to(self.z.device)
                    for layer, z in enumerate(self.z)
                ]
            )

    @property
    def attention(self) -> torch.Tensor:
        """Every pattern at once, `(layers, heads, T, T)`: for short prompts only (refused above
        `ALL_PATTERNS_BYTES`); views rebuild what they show with `pattern` / `layer_patterns`."""
        tokens = len(self.tokens)
        size = len(self.keys) * self.heads_per_layer * tokens * tokens * 4
        if size > ALL_PATTERNS_BYTES:
            raise ValueError(
                f"All attention patterns of {tokens:,} tokens would take {size / 2**30:.1f} GiB; "
                "rebuild one head or layer at a time (Analysis.pattern, Analysis.layer_patterns)."
            )
        return torch.stack([self.layer_patterns(layer) for layer in range(len(self.keys))])

    def top_predictions(self, k: int = TOP_K, position: int | None = None) -> list[Prediction]:
        """The model's k most likely next tokens after the token at `position` (default: the
        last); other positions are read off the final residual stream, as the model does."""
        if position is None or position % len(self.tokens) == len(self.tokens) - 1:
            return self._top(self.logits.unsqueeze(0), k)[0]
        with torch.inference_mode():
            logits = self.lm.unembed(self.residual[-1, position % len(self.tokens)])
        return self._top(logits.float().unsqueeze(0), k)[0]

    def logit_lens(self, position: int = -1, k: int = LENS_K) -> list[list[Prediction]]:
        """Top-k next tokens read off the residual stream at `position` after each layer.

        Row 0 reads the embeddings, row l + 1 the stream after layer l; the last row equals the
        model's own output. Read during the analysis at the last position, on request at others.
        """
        position = position % len(self.tokens)
        if position == len(self.tokens) - 1 and self.last_lens and len(self.last_lens[0]) >= k:
            return [row[:k] for row in self.last_lens]
        with torch.inference_mode():
            logits = self.lm.unembed(self.residual[:, position])
        return self._top(logits, k)

    def _top(self, logits: torch.Tensor, k: int) -> list[list[Prediction]]:
        return top_predictions(self.lm, logits, k)

    def to_dict(self) -> dict:
        """The compact document the CLI prints and the API answers: what the views draw."""

        def norms(x: torch.Tensor) -> list:
            return (
                torch.linalg.vector_norm(x, dim=-1, dtype=torch.float32).round(decimals=3).tolist()
            )

        return {
            "model": self.lm.card.to_dict() | {"revision": self.lm.revision},
            "warnings": self.lm.warnings(),
            "prompt": self.prompt,
            "notices": self.notices,
            "tokens": [t.to_dict() for t in self.tokens],
            "embeddings": {
                "token_norms": norms(self.token_embeddings),
                "position_norms": None
                if self.position_embeddings is None
                else norms(self.position_embeddings),
            },
            "heads": self.heads.to_dict(),
            "residual": {
                "stream_norms": norms(self.residual),
                "attn_norms": self.attn_norms.round(decimals=3).tolist(),
                "mlp_norms": self.mlp_norms.round(decimals=3).tolist(),
            },
            "predictions": [p.to_dict() for p in self.top_predictions()],
            "logit_lens": {
                "position": len(self.tokens) - 1,
                "layers": [[p.to_dict() for p in row] for row in self.logit_lens()],
            },
        }


def analyze(lm: LoadedModel, prompt: str) -> Analysis:
    """Tokenize, run one traced forward pass, and score every head."""
    check_prompt(prompt)
    tokens, notices = fit_context(tokenize(lm.tokenizer, prompt), lm.card.context_length)
    return _analyze_tokens(lm, prompt, tokens, notices)


def analyze_continuation(lm: LoadedModel, prompt: str, new_ids: list[int]) -> Analysis:
    """Analyze the prompt followed by `new_ids` exactly (generated tokens, which re-tokenizing
    the joined text could merge differently), in one pass; the text is the pieces laid end to end."""
    check_prompt(prompt)
    room = lm.card.context_length - len(new_ids)
    tokens, notices = fit_context(tokenize(lm.tokenizer, prompt), max(room, 1))
    text, start = prompt, len(prompt)
    chunks = piece_bytes(lm.tokenizer, list(new_ids))
    for token_id, chunk in zip(new_ids, chunks, strict=True):
        piece = lm.token_text(token_id)
        tokens.append(
            Token(
                len(tokens), token_id, lm.tokenizer.convert_ids_to_tokens(token_id), piece,
                lm.token_display(token_id), start, start + len(piece),
                split=chunk is not None and is_split(chunk),
            )
        )  # fmt: skip
        text, start = text + piece, start + len(piece)
    return _analyze_tokens(lm, text, tokens, notices)


def _analyze_tokens(
    lm: LoadedModel, prompt: str, tokens: list[Token], notices: list[str], *, check: bool = True
) -> Analysis:
    """The traced pass over `tokens` (already cut to the model's context); `check`: against the
    cost limits first (the speed probe, which the estimate itself waits for, does not)."""
    return analyze_batch(lm, [(prompt, tokens, notices)], check=check)[0]


def analyze_batch(
    lm: LoadedModel,
    prompts: list[tuple[str, list[Token], list[str]]],
    *,
    lens: bool = True,
    check: bool = True,
) -> list[Analysis]:
    """`analyze` of several prompts of the same token count in ONE traced pass, batch axis first:
    (prompt, its tokens already cut to the model's context, its notices) each. Each Analysis holds
    views of the batch's tensors, and equals its prompt's own up to float rounding. Without
    `lens`, only the last layer is read out (the logit lens is then read on request): the lens of
    every layer is most of the work of a batch of short prompts (layers + 1 rows x vocabulary)."""
    sizes = {len(tokens) for _, tokens, _ in prompts}
    if sizes == {0}:
        raise PromptError("The prompt gave no tokens to analyze.")
    if len(sizes) != 1:
        raise ValueError(f"analyze_batch needs prompts of one token count, got {sorted(sizes)}")
    size = sizes.pop()
    if check:
        check_analysis(lm, size)
    ids = torch.tensor([[t.id for t in tokens] for _, tokens, _ in prompts])
    with torch.inference_mode():
        # The model's own unembedding is skipped: the logit lens at the last position reads the
        # big read-out matrix once for every layer's stream, and its last row IS the logits.
        _, rec = run(lm, ids, score=True, keep_sublayer_outputs=False, logits_to_keep=NO_POSITIONS)
        layers = lm.layers
        acts = rec.acts
        residual = rec.stack("residual", layers)  # views of the pass's stacks, no copies
        read = residual[:, :, -1] if lens else residual[-1:, :, -1]
        lens_logits = lm.unembed(read).float()  # (layers + 1, B, vocab), or (1, B, vocab)
        z = rec.stack("attn.hook_z", layers).unflatten(-1, (lm.heads, -1))
        attn_norms = rec.stack("hook_attn_out_norm", layers)
        mlp_norms = rec.stack("hook_mlp_out_norm", layers)
        mlp_last = rec.stack("hook_mlp_out_last", layers)
        reports = head_reports(lm, rec, ids)
        pos = acts.get("hook_pos_embed")
        analyses = []
        for row, ((prompt, tokens, notices), heads) in enumerate(
            zip(prompts, reports, strict=True)
        ):
            analyses.append(
                Analysis(
                    lm=lm,
                    prompt=prompt,
                    tokens=tokens,
                    notices=notices,
                    token_embeddings=acts["hook_embed"][row].float(),
                    position_embeddings=None if pos is None else pos[row % len(pos)].float(),
                    keys=[_row_keys(rec.keys[layer], row) for layer in range(layers)],
                    residual=residual[:, row],
                    attn_norms=attn_norms[:, row],
                    mlp_norms=mlp_norms[:, row],
                    mlp_last=mlp_last[:, row],
                    z=z[:, row],
                    logits=lens_logits[-1, row].clone(),  # not a view: it would keep every row
                    heads=heads,
                    last_lens=top_predictions(lm, lens_logits[:, row], LENS_K) if lens else [],
                )
            )
    return analyses


def head_reports(lm: LoadedModel, rec: Recorder, ids: torch.Tensor) -> list[HeadReport]:
    """Each batch row's head report from a pass that scored the heads (`run(score=True)`); a
    sliding-window layer is judged against uniform attention over what it can see."""
    scores, evidence = rec.scores(lm.layers)
    chance = chance_scores_per_row(ids)
    card = lm.card
    windows = [card.sliding_window if l in card.local_layers else None for l in range(lm.layers)]
    return [
        HeadReport.from_scores(
            {k: v[row].tolist() for k, v in scores.items()},
            chance[row],
            {k: v[row].tolist() for k, v in evidence.items()},
            windowed_chance(ids[row], windows),
        )
        for row in range(ids.shape[0])
    ]


def score_batch(lm: LoadedModel, token_lists: list[list[Token]]) -> list[HeadReport]:
    """The head report `analyze` gives each of several prompts of one token count, from one
    scored pass that keeps nothing else (no stream, no queries and keys, nothing unembedded)."""
    check_analysis(lm, len(token_lists[0]))
    ids = torch.tensor([[t.id for t in tokens] for tokens in token_lists])
    with torch.inference_mode():
        _, rec = run(lm, ids, score=True, keep_keys=False, keep_sublayer_outputs=False,
                     logits_to_keep=NO_POSITIONS)  # fmt: skip
        return head_reports(lm, rec, ids)


def _row_keys(keys: LayerKeys, row: int) -> LayerKeys:
    """One batch row of a layer's queries and keys (batch axis of 1)."""
    mask = None if keys.mask is None else keys.mask[row : row + 1]
    return replace(keys, query=keys.query[row : row + 1], key=keys.key[row : row + 1], mask=mask)


_PROBE_WORDS = "the river keeps a slow map of every town it passes and".split()


def probe_analysis(lm: LoadedModel, tokens: int) -> None:
    """An analysis of about `tokens` tokens of plain words, as `analyze` runs one, for the speed
    probe (core/speed.py) to time: the pass and everything an analysis makes of it."""
    text = " ".join(_PROBE_WORDS[i % len(_PROBE_WORDS)] for i in range(tokens))
    kept = tokenize(lm.tokenizer, text)[:tokens]
    _analyze_tokens(lm, text[: kept[-1].end], kept, [], check=False)


speed.time_analyses_with(probe_analysis)
