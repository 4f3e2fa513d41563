"""The glossary: the words the stages use, each in one or two plain sentences."""

from __future__ import annotations

from dash import html

TERMS: tuple[tuple[str, str], ...] = (
    (
        "token",
        "A piece of text the model reads as one unit: a word, part of a word, a space and "
        "a word, or a punctuation mark.",
    ),
    ("token id", "The token's number in the vocabulary; the model only ever sees these numbers."),
    ("vocabulary", "The fixed list of every token the model knows (50,257 for GPT-2)."),
    ("embedding", "The learned vector (list of numbers) a token id is turned into before layer 0."),
    (
        "position embedding",
        "A learned vector per position, added to the token's embedding so the "
        "model knows word order (GPT-2). Rotary models encode position inside attention instead.",
    ),
    (
        "cosine similarity",
        "How closely two vectors point the same way: 1 = same direction, "
        "0 = unrelated, -1 = opposite.",
    ),
    ("layer", "One block of the network: attention, then an MLP. GPT-2 Small stacks 12."),
    (
        "residual stream",
        "The running vector of each token that every layer reads from and adds its output to.",
    ),
    (
        "attention head",
        "One of the parallel attention units of a layer; each learns its own rule "
        "for which earlier tokens to read.",
    ),
    (
        "attention pattern",
        "A head's weights: for each token, how much it reads from each earlier "
        "token. Each row adds up to 1.",
    ),
    (
        "query, key, value",
        "Each token asks (query), advertises (key) and offers (value); the "
        "match between a query and the keys sets the attention weights.",
    ),
    ("previous-token head", "A head that mostly reads the token just before."),
    (
        "attention sink",
        "The first token, where many heads park attention when they have nothing "
        "better to do; the grid shows each head's share there as a bar and names the "
        "head after what it does with the rest.",
    ),
    ("duplicate-token head", "A head that looks back at earlier copies of the current token."),
    (
        "induction head",
        "A head that finds the earlier copy of the current token and reads the "
        "token that followed it, so the model can continue a repeated pattern.",
    ),
    (
        "not applicable",
        "A score that this prompt cannot measure, e.g. induction when no token "
        "repeats. It is not evidence that the head lacks the behaviour.",
    ),
    (
        "MLP",
        "Multi-layer perceptron: a small feed-forward network applied to each token "
        "separately; it widens the vector, applies a non-linearity, and narrows it back.",
    ),
    ("activation function", "The non-linearity inside the MLP (GELU for GPT-2)."),
    (
        "LayerNorm",
        "Rescales a vector to a standard size before each sublayer, which keeps training stable.",
    ),
    ("logit", "The raw score the model gives each possible next token."),
    ("softmax", "Turns logits into probabilities that add up to 1."),
    (
        "logit lens",
        "Reading the residual stream of an intermediate layer with the model's final "
        "read-out, to see what it would predict if it stopped there.",
    ),
    (
        "ablation",
        "Removing part of the model (here: attention heads, by replacing their output with zeros "
        "or with their average) to see what it was doing.",
    ),
    (
        "KL divergence",
        "How different two probability distributions are, in nats: 0 when they are the same, "
        "larger the more the second one moved away from the first.",
    ),
    (
        "logit attribution",
        "Splitting a token's logit into what each head and MLP wrote directly into the residual "
        "stream; the parts add up to the logit.",
    ),
    (
        "integrated gradients",
        "Scores each input token by fading its embedding in from zero and adding up the gradients "
        "along the way; the scores add up to the change in the output.",
    ),
    (
        "gradient x input",
        "A quick token score: the gradient of the output times the token's embedding.",
    ),
    (
        "greedy decoding",
        "Generating by always taking the single most likely next token.",
    ),
    (
        "beam search",
        "Generating by keeping the few most likely partial continuations (beams) at every step "
        "and returning the most likely whole one.",
    ),
    (
        "temperature",
        "Divides the logits before sampling: below 1 the likely tokens win more often, above 1 "
        "the choice becomes more random.",
    ),
    (
        "top-k / top-p",
        "Sampling only among the k most likely tokens (top-k), or among the fewest likely tokens "
        "whose probabilities add up to p (top-p, nucleus sampling).",
    ),
    ("parameters", "The learned numbers of the model; GPT-2 Small has 124 million."),
    ("context length", "The most tokens the model can read at once (1,024 for GPT-2)."),
)


def glossary() -> html.Details:
    """The glossary as a collapsible definition list."""
    return html.Details(
        [
            html.Summary("Glossary"),
            html.Dl(
                [item for term, text in TERMS for item in (html.Dt(term), html.Dd(text))],
                className="glossary",
            ),
        ],
        id="glossary",
        className="glossary-box",
    )
