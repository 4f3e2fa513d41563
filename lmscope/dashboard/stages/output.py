"""Stage 5, output: the predicted next token, the top 10, and how the guess forms layer by layer."""

from __future__ import annotations

from dash import Output, html, no_update

from ...core.analysis import Analysis
from .. import figures
from ..figures import percent
from . import HIDDEN, SHOWN, Drawing, Views, graph, ready, section
from .tokens import chips

SENTENCE_TOKENS = 60  # the end of the prompt shown before the predicted token

EXPLAIN = (
    "At the end, the last token's vector is compared with every vocabulary entry to give a score "
    "([[logit]]) per possible next token; [[softmax]] turns the scores into probabilities. The "
    "model only predicts: generating text means picking a token and running again. The "
    "[[logit lens]] applies the same read-out to the residual stream after each layer, showing "
    "how the guess forms."
)


TIED_NOTE = (
    "{name} ties its embeddings: the read-out matrix is the embedding table itself. So the logit "
    "lens's bottom row (the embeddings, before any layer) mostly predicts the input token again, "
    "{token}: a vector is most similar to itself. That row says nothing about the next token; "
    "watch the rows above it, where the layers move the guess toward the answer."
)


def lens_note(analysis: Analysis, position: int = -1) -> html.P | None:
    """The logit lens's embeddings row explained, where the embeddings are tied."""
    if not analysis.lm.card.tied_embeddings:
        return None
    token = analysis.tokens[position].display
    return html.P(
        TIED_NOTE.format(name=analysis.lm.card.name, token=repr(token)),
        className="hint",
        id="logit-lens-tied",
    )


def layout() -> html.Section:
    return section(
        5,
        "Output",
        EXPLAIN,
        html.Div(id="output-body"),
        html.Div(
            [graph("top10", "lmscope-top10"), graph("logit-lens", "lmscope-logit-lens")],
            className="two-col",
        ),
    )


def draw(drawing: Drawing) -> tuple:
    """The prediction after the followed token, its top 10 and its logit lens (`VIEWS`)."""
    analysis, data, focus = drawing.analysis, drawing.data, drawing.focus
    if analysis is None:
        empty = html.P("Press Analyze to see the prediction.", className="empty")
        return empty, no_update, HIDDEN, no_update, HIDDEN
    position = focused_position(analysis, focus)
    best = analysis.top_predictions(1, position)[0]
    shown = best.to_dict()["display"]
    tail = analysis.tokens[max(0, position + 1 - SENTENCE_TOKENS) : position + 1]
    predicted = {
        "id": "predicted-token",
        "text": shown,
        "label": figures.percent(best.probability),
        "title": f"predicted next token, id {best.id}",
    }
    sentence = html.Div(
        [
            html.Span("…", className="hint") if len(tail) < len(analysis.tokens) else None,
            chips(tail, "chip-plain", after=predicted),
        ],
        className="sentence",
    )
    body = [
        html.P(
            [
                "Most likely next token: ",
                html.Strong(shown, className="mono"),
                f" with probability {figures.percent(best.probability)}.",
            ],
            className="prediction",
        ),
        sentence,
        followed(analysis, position),
        lens_note(analysis, position),
        ready(data["id"]),
    ]
    return (
        body,
        figures.top_predictions(analysis, position=position),
        SHOWN,
        figures.logit_lens(analysis, position=position),
        SHOWN,
    )


VIEWS = Views(
    (
        Output("output-body", "children"),
        Output({"kind": "figure", "name": "top10"}, "figure"),
        Output({"kind": "figure", "name": "top10"}, "style"),
        Output({"kind": "figure", "name": "logit-lens"}, "figure"),
        Output({"kind": "figure", "name": "logit-lens"}, "style"),
    ),
    draw,
    follows_focus=True,
)


def focused_position(analysis: Analysis, focus: dict | None) -> int:
    """The token the page follows (`focus.position`), else the last one."""
    position = (focus or {}).get("position")
    last = len(analysis.tokens) - 1
    if isinstance(position, int) and not isinstance(position, bool) and 0 <= position <= last:
        return position
    return last


def followed(analysis: Analysis, position: int) -> html.P | None:
    """Where the stage reads from when it is not the last token, and what the text has next."""
    if position == len(analysis.tokens) - 1:
        return None
    token, after = analysis.tokens[position], analysis.tokens[position + 1]
    return html.P(
        [
            f"Predictions after token {position} ",
            html.Span(token.display, className="mono"),
            " (the token picked on the page). The text goes on with ",
            html.Span(after.display, className="mono"),
            ".",
        ],
        className="hint",
        id="output-position",
        **{"data-position": str(position)},
    )


UNSURE = 0.2  # a top prediction below this probability is called a weak guess


def tour_text(analysis: Analysis | None) -> str:
    """What the tour says of this stage, for this prompt (the model's own guess)."""
    if analysis is None:
        return "The last token's vector becomes one score per vocabulary entry."
    best = analysis.top_predictions(1)[0]
    text = (
        f"The model's guess for the next token: {best.display} at "
        f"{percent(best.probability)}. The bars show the top 10; the logit lens beside them "
        "shows, layer by layer, what the model would predict if it stopped there."
    )
    if best.probability < UNSURE:
        text += (
            f" {analysis.lm.card.name} is far from sure here: a small model trained for its "
            "attention heads rather than for language guesses weakly; a trained model such as "
            "GPT-2 or SmolLM2 answers ␣Mary with high probability."
        )
    return text
