"""The glossary: the words the stages use, each in one or two plain sentences, written for the
loaded model (its norm, positions, MLP, attention and sizes come from its model card).

Stage texts link their terms with `[[term]]` or `[[shown words|term]]` markers in our own
constant strings; `linked` turns them into in-page links to `#glossary-<slug>`. Text from a model
or a user never goes through it.
"""

from __future__ import annotations

from dataclasses import dataclass

from dash import Dash, Input, Output, dcc, html

from ..core.card import ModelCard
from ..core.errors import LmscopeError
from ..core.heads import SINK_MARK, HeadReport
from ..service import Service
from .shown import while_shown
from .static import static
from .terms import counted, slug


@dataclass(frozen=True)
class Entry:
    """One glossary entry; `concept` names its anchor, stable across models (`glossary-<concept>`),
    while `term` is what this model calls it (RMSNorm or LayerNorm under `normalization`)."""

    concept: str
    term: str
    text: str


@dataclass(frozen=True)
class Facts:
    """What the card does not say but the glossary needs: read off the loaded model and, where one
    is shown, the analysis of the prompt."""

    gated_mlp: bool = False
    tied_embeddings: bool | None = None
    sink_heads: int | None = None  # heads parking >= SINK_MARK on the first token, this prompt
    total_heads: int | None = None


def _positions(card: ModelCard) -> Entry:
    if card.rotary:
        return Entry(
            "positions",
            "RoPE (rotary position embedding)",
            "How this model knows word order: no position vector is added to the tokens; "
            "inside attention each query and key is rotated by an angle that grows with its "
            "position, so a query-key match depends on how far apart the two tokens are. "
            "(GPT-2 instead adds a learned vector per position.)",
        )
    if card.positional_encoding.lower().startswith("learned"):
        return Entry(
            "positions",
            "position embedding (learned)",
            "A learned vector per position, added to the token's embedding before layer 0 so "
            f"the model knows word order; it has {card.context_length:,} of them, one per "
            "position it can read. (Rotary models such as Llama rotate queries and keys instead.)",
        )
    return Entry(
        "positions",
        f"positions ({card.positional_encoding})",
        f"How the model is told where each token sits: {card.positional_encoding}.",
    )


def _normalization(card: ModelCard) -> Entry:
    if card.normalization == "RMSNorm":
        return Entry(
            "normalization",
            "RMSNorm",
            "Root-mean-square normalization: before each sublayer, the vector is divided by the "
            "root of its mean square and scaled by learned weights, keeping its size steady. "
            "Unlike GPT-2's LayerNorm it does not subtract the mean and has no bias.",
        )
    if card.normalization == "LayerNorm":
        return Entry(
            "normalization",
            "LayerNorm",
            "Before each sublayer, the vector's mean is subtracted and it is divided by its "
            "standard deviation, then scaled and shifted by learned weights; this keeps training "
            "stable.",
        )
    return Entry(
        "normalization",
        card.normalization,
        "Rescales each token's vector to a steady size before each sublayer.",
    )


def _design(card: ModelCard) -> list[Entry]:
    """Entries for what sets this model's family apart, where it has it (the card's design
    fields, set from its adapter and config)."""
    found = []
    if card.post_norms:
        found.append(Entry(
            "post-norm", "norm after each sublayer",
            "This model normalizes what attention and the MLP write before adding it to the "
            "residual stream, as well as before each sublayer: what a layer adds is the normed "
            "output, and lmscope records it after that norm.",
        ))  # fmt: skip
    if card.qk_norm:
        found.append(Entry(
            "qk-norm", "query/key norm",
            "Each query and key is normalized before they are compared, so an attention score "
            "is set by their directions more than by their sizes.",
        ))  # fmt: skip
    if card.sliding_window:
        found.append(Entry(
            "sliding-window", "sliding window (local attention)",
            f"On {len(card.local_layers)} of its {card.layers} layers each token reads only the "
            f"last {card.sliding_window:,} tokens; the other layers read the whole prompt.",
        ))  # fmt: skip
    if card.attention_softcap or card.final_softcap:
        found.append(Entry(
            "soft-capping", "soft-capping",
            "Scores are squashed by c x tanh(score / c), so none can grow past c: "
            + ", ".join(f"{what} at {value:g}" for what, value in (
                ("attention scores", card.attention_softcap), ("logits", card.final_softcap),
            ) if value) + ".",
        ))  # fmt: skip
    if card.embedding_scale != 1.0:
        found.append(Entry(
            "embedding-scale", "embedding scale",
            f"The token's row of the embedding table is multiplied by {card.embedding_scale:g} "
            f"(the square root of its width, {card.hidden_size:,}) before layer 0.",
        ))  # fmt: skip
    return found


def _activation(card: ModelCard, gated: bool) -> Entry:
    if gated:
        name = (
            "SwiGLU (gated MLP)" if card.activation == "SiLU" else f"gated MLP ({card.activation})"
        )
        return Entry(
            "activation",
            name,
            f"This model's MLP widens the vector twice side by side ({card.hidden_size:,} -> "
            f"{card.mlp_size:,}): one copy, the gate, goes through {card.activation} and "
            "multiplies the other (up) element by element, so the gate decides how much of each "
            "feature passes; a third matrix (down) narrows the product back. GPT-2's MLP has no "
            "gate: one widening, GELU, one narrowing.",
        )
    return Entry(
        "activation",
        card.activation,
        f"The non-linearity inside the MLP, applied to each of its {card.mlp_size:,} "
        "features between the widening and the narrowing; without it the MLP would be one "
        "matrix.",
    )


def _sink(facts: Facts) -> Entry:
    text = (
        "The first token, where many heads park attention when they have nothing better to do; "
        "the grid shows each head's share there as a bar and names the head after what it does "
        "with the rest."
    )
    if facts.sink_heads is not None and facts.total_heads:
        if facts.sink_heads:
            text += (
                f" On this prompt {facts.sink_heads} of {facts.total_heads} heads park at least "
                f"{SINK_MARK:.0%} of their attention there."
            )
        else:
            text += (
                f" On this prompt no head parks {SINK_MARK:.0%} of its attention there: this "
                "model shows no attention sink here."
            )
    return Entry("attention-sink", "attention sink", text)


def _tied(card: ModelCard, tied: bool | None) -> Entry | None:
    if tied is None:
        return None
    if tied:
        text = (
            "The model reads out its prediction with the embedding table itself: the same "
            f"{card.vocab_size:,} x {card.hidden_size:,} matrix turns token ids into vectors at "
            "the start and vectors into logits at the end."
        )
    else:
        text = (
            "This model does not tie its embeddings: the read-out (unembedding) is a matrix of "
            "its own, separate from the embedding table."
        )
    return Entry("tied-embeddings", "tied embeddings", text)


def _gqa(card: ModelCard) -> Entry | None:
    heads, kv = card.heads_per_layer, card.key_value_heads
    if not kv or kv >= heads:
        return None
    return Entry(
        "grouped-query-attention",
        "grouped-query attention (GQA)",
        f"The model's {heads} query heads per layer share {counted(kv, 'key/value head')}, "
        f"{heads // kv} query heads per group: heads of a group compare their own queries with "
        "the same keys and read the same values. It saves memory; GPT-2 gives every head its own keys and "
        "values.",
    )


def entries(card: ModelCard, facts: Facts = Facts()) -> list[Entry]:
    """Every entry for the model of `card`, in reading order. The glossary's heading names the
    model once; the entries say "the model" and give its numbers."""
    items: list[Entry | None] = [
        Entry(
            "token",
            "token",
            "A piece of text the model reads as one unit: a word, part of a word, a space and "
            "a word, or a punctuation mark.",
        ),
        Entry(
            "token-id",
            "token id",
            "The token's number in the vocabulary; the model only ever sees these numbers.",
        ),
        Entry(
            "vocabulary",
            "vocabulary",
            f"The fixed list of every token the model knows: {card.vocab_size:,} of them.",
        ),
        Entry(
            "byte-level-bpe",
            "byte-level BPE",
            "Text is stored as bytes (UTF-8: one to four per character), and the vocabulary is "
            "built from byte sequences, so any text can be tokenized: a character with no token "
            "of its own is split into its bytes across tokens. Such a token holds part of a "
            "character and is shown as its bytes, like <0xC3>, in a dashed chip.",
        ),
        Entry(
            "embedding",
            "embedding",
            f"The learned vector ({card.hidden_size:,} numbers here) a token id is turned into "
            "before layer 0.",
        ),
        _tied(card, facts.tied_embeddings),
        _positions(card),
        Entry(
            "cosine-similarity",
            "cosine similarity",
            "How closely two vectors point the same way: 1 = same direction, 0 = unrelated, "
            "-1 = opposite.",
        ),
        Entry(
            "layer",
            "layer",
            f"One block of the network: attention, then an MLP. The model stacks {card.layers}.",
        ),
        _normalization(card),
        *_design(card),
        Entry(
            "residual-stream",
            "residual stream",
            "The running vector of each token that every layer reads from and adds its output to.",
        ),
        Entry(
            "attention-head",
            "attention head",
            f"One of the parallel attention units of a layer ({card.heads_per_layer} per layer "
            "here); each learns its own rule for which earlier tokens to read.",
        ),
        _gqa(card),
        Entry(
            "attention-pattern",
            "attention pattern",
            "A head's weights: for each token, how much it reads from each earlier token. Each "
            "row adds up to 1.",
        ),
        Entry(
            "query-key-value",
            "query, key, value",
            "Each token asks (query), advertises (key) and offers (value); the match between a "
            "query and the keys sets the attention weights.",
        ),
        _sink(facts),
        Entry(
            "previous-token-head",
            "previous-token head",
            "A head that mostly reads the token just before.",
        ),
        Entry(
            "duplicate-token-head",
            "duplicate-token head",
            "A head that looks back at earlier copies of the current token.",
        ),
        Entry(
            "induction-head",
            "induction head",
            "A head that finds the earlier copy of the current token and reads the token that "
            "followed it, so the model can continue a repeated pattern.",
        ),
        Entry(
            "name-mover-head",
            "name-mover head",
            "A head, usually in a late layer, that at the last token reads a name from earlier in "
            "the text and copies it into the prediction (named in GPT-2's indirect-object "
            "circuit, Wang et al. 2022); the name-mover experiment looks for them.",
        ),
        Entry(
            "not-applicable",
            "not applicable",
            "A score that this prompt cannot measure, e.g. induction when no token repeats. It "
            "is not evidence that the head lacks the behaviour.",
        ),
        Entry(
            "mlp",
            "MLP",
            f"Multi-layer perceptron: a small feed-forward network applied to each token "
            f"separately; it widens the vector ({card.hidden_size:,} -> {card.mlp_size:,} here), "
            "applies a non-linearity, and narrows it back.",
        ),
        _activation(card, facts.gated_mlp),
        Entry("logit", "logit", "The raw score the model gives each possible next token."),
        Entry("softmax", "softmax", "Turns logits into probabilities that add up to 1."),
        Entry(
            "logit-lens",
            "logit lens",
            "Reading the residual stream of an intermediate layer with the model's final "
            "read-out, to see what it would predict if it stopped there.",
        ),
        Entry(
            "ablation",
            "ablation",
            "Removing part of the model (here: attention heads, by replacing their output with "
            "zeros or with their average) to see what it was doing.",
        ),
        Entry(
            "backup-heads",
            "backup heads",
            "Heads that take over a job when the heads doing it are removed, so an ablation can "
            "barely move the prediction even though the removed heads did the work "
            "('self-repair').",
        ),
        Entry(
            "kl-divergence",
            "KL divergence",
            "How different two probability distributions are, in nats: 0 when they are the same, "
            "larger the more the second one moved away from the first.",
        ),
        Entry(
            "logit-attribution",
            "logit attribution",
            "Splitting a token's logit into what each head and MLP wrote directly into the "
            "residual stream; the parts add up to the logit.",
        ),
        Entry(
            "integrated-gradients",
            "integrated gradients",
            "Scores each input token by fading its embedding in from zero and adding up the "
            "gradients along the way; the scores add up to the change in the output.",
        ),
        Entry(
            "gradient-x-input",
            "gradient x input",
            "A quick token score: the gradient of the output times the token's embedding.",
        ),
        Entry(
            "greedy-decoding",
            "greedy decoding",
            "Generating by always taking the single most likely next token.",
        ),
        Entry(
            "beam-search",
            "beam search",
            "Generating by keeping the few most likely partial continuations (beams) at every "
            "step and returning the most likely whole one.",
        ),
        Entry(
            "temperature",
            "temperature",
            "Divides the logits before sampling: below 1 the likely tokens win more often, above "
            "1 the choice becomes more random.",
        ),
        Entry(
            "top-k-top-p",
            "top-k / top-p",
            "Sampling only among the k most likely tokens (top-k), or among the fewest likely "
            "tokens whose probabilities add up to p (top-p, nucleus sampling).",
        ),
        Entry(
            "parameters",
            "parameters",
            f"The learned numbers of the model: {card.parameters / 1e6:,.0f} million of them.",
        ),
        Entry(
            "context-length",
            "context length",
            f"The most tokens the model can read at once: {card.context_length:,}.",
        ),
    ]
    return [item for item in items if item is not None]


def sink_facts(report: HeadReport | None) -> dict:
    """The `Facts` fields an analysis' head report gives: how many heads sink, of how many."""
    if report is None:
        return {}
    total = sum(len(row) for row in report.categories)
    return {"sink_heads": len(report.sink_heads()), "total_heads": total}


def entry_list(items: list[Entry]) -> html.Dl:
    """The entries as a definition list; each term carries its concept anchor and, where the
    term's own name differs, an anchor of that name too (`#glossary-rmsnorm`)."""
    rows = []
    for item in items:
        own = slug(item.term)
        anchor = [html.Span(id=f"glossary-{own}")] if own != item.concept else []
        rows.append(html.Dt([*anchor, item.term], id=f"glossary-{item.concept}"))
        rows.append(html.Dd(item.text))
    return html.Dl(rows, className="glossary")


def glossary() -> html.Details:
    """The glossary box; its entries are drawn for the loaded model while it is open (`register`)."""
    return html.Details(
        [
            html.Summary(["Glossary", html.Span(id="glossary-model", className="sub")]),
            html.Div(id="glossary-body"),
            dcc.Store(id="glossary-shown"),
        ],
        id="glossary",
        className="glossary-box",
    )


def register(app: Dash, service: Service) -> None:
    app.clientside_callback(
        "function (model) { return model && model.name ? ' for ' + model.name : ''; }",
        Output("glossary-model", "children"),
        Input("model", "data"),
    )
    while_shown(
        app, Input("glossary", "open"), "glossary-shown", Input("model", "data"),
        Input("analysis", "data"),
    )  # fmt: skip

    @app.callback(Output("glossary-body", "children"), Input("glossary-shown", "data"))
    def draw(shown):
        """The entries for the model the page now shows (and its sink on the analyzed prompt),
        drawn while the glossary is open."""
        model, data = shown or (None, None)
        try:
            lm = service.model(model["id"])
        except (LmscopeError, KeyError, TypeError):
            return []
        analysis = service.stored(data)
        report = analysis.heads if analysis is not None and analysis.lm is lm else None
        facts = Facts(lm.card.gated_mlp, lm.card.tied_embeddings, **sink_facts(report))
        return static(entry_list(entries(lm.card, facts)))
