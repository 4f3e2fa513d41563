"""Stage 2, embeddings: one token's vector, its nearest tokens, and what position adds."""

from __future__ import annotations

from dash import Input, Output, html, no_update

from ...core.analysis import Analysis
from ...core.embeddings import nearest_tokens
from ...core.model import LoadedModel
from .. import figures
from ..static import static
from . import HIDDEN, SHOWN, Drawing, Views, graph, position_input, ready, section

EXPLAIN = (
    "Each token id picks one row of a big table, the [[embedding]] matrix: a list of numbers (a "
    "vector) that the network learned during training. Tokens used in similar ways end up with "
    "vectors pointing in similar directions, which is why a token's nearest neighbours by [[cosine "
    "similarity]] are often related words. The model also needs to know where each token sits: "
    "GPT-2 adds a learned position vector; rotary models instead rotate queries and keys inside "
    "attention ([[how this model does it|positions]])."
)


def layout() -> html.Section:
    return section(
        2,
        "Embeddings",
        EXPLAIN,
        html.Label(
            [
                "Token to inspect (its position; or click a token in stage 1) ",
                position_input("embed-position"),
            ]
        ),
        html.Div(id="embed-info"),
        graph("token-vector", "lmscope-token-embedding"),
        graph("position-vector", "lmscope-position-embedding"),
        html.P(id="embed-position-note", className="notice", hidden=True),
        html.Div(id="embed-neighbors"),
    )


def no_position_vector(analysis: Analysis) -> str:
    """What stands where a position-vector plot would be, for a model that adds none."""
    return (
        f"No position vector to show: {analysis.lm.card.name} uses "
        f"{analysis.lm.card.positional_encoding} positions, which act inside attention (each "
        "query and key is rotated by an angle that grows with its position), so the vector above "
        "is all that enters layer 0, the same at every position."
    )


def position_role(analysis: Analysis, position: int) -> str:
    """What the model knows about where the token is, in words."""
    kind = analysis.lm.card.positional_encoding
    if analysis.position_embeddings is None:
        return f"Nothing is added for its position ({kind} positions; see below)."
    return (
        f"Position {position} has its own learned vector ({kind} positions), added to the token "
        f"vector before layer 0; the model reads at most {analysis.lm.card.context_length:,} "
        "positions."
    )


def stage(analysis: Analysis, position: int, analysis_id: str) -> tuple:
    """The stage's contents for the token at `position`."""
    token = analysis.tokens[position]
    vector = analysis.token_embeddings[position]
    info = html.P(
        [
            f"Token {position} ",
            html.Span(token.display, className="chip-inline", **{"data-token-index": position}),
            f" (id {token.id}) is a vector of {vector.numel():,} numbers; its length (norm) "
            f"is {float(vector.norm()):.2f}. ",
            position_role(analysis, position),
        ]
    )
    strip = figures.vector_strip(vector, f"Token embedding of {token.display!r}")
    note, no_note = "", True
    if analysis.position_embeddings is None:
        pos_fig, pos_style = no_update, HIDDEN
        note, no_note = no_position_vector(analysis), False
    else:
        pos_fig = figures.vector_strip(
            analysis.position_embeddings[position], f"Position embedding of position {position}"
        )
        pos_style = SHOWN
    neighbors = nearest_tokens(analysis.lm, token.id, k=10)
    table = html.Table(
        [
            html.Caption(f"Nearest tokens to {token.display!r} in the embedding table"),
            html.Thead(html.Tr([html.Th("token"), html.Th("id"), html.Th("cosine")])),
            html.Tbody(
                [
                    html.Tr(
                        [
                            html.Td(n.to_dict()["display"], className="mono"),
                            html.Td(n.id),
                            html.Td(f"{n.similarity:.3f}"),
                        ]
                    )
                    for n in neighbors
                ]
            ),
        ],
        className="table neighbors",
    )
    return (
        info,
        strip,
        SHOWN,
        pos_fig,
        pos_style,
        note,
        no_note,
        [static(table), ready(analysis_id)],
    )


OUTPUTS = (
    Output("embed-position", "max"),
    Output("embed-position", "value"),
    Output("embed-info", "children"),
    Output({"kind": "figure", "name": "token-vector"}, "figure"),
    Output({"kind": "figure", "name": "token-vector"}, "style"),
    Output({"kind": "figure", "name": "position-vector"}, "figure"),
    Output({"kind": "figure", "name": "position-vector"}, "style"),
    Output("embed-position-note", "children"),
    Output("embed-position-note", "hidden"),
    Output("embed-neighbors", "children"),
)
BOX = "embed-position.value"


def draw(drawing: Drawing) -> tuple:
    """A new analysis shows its last token; a token typed in the box or clicked elsewhere shows
    that one (`VIEWS`). What is not a position of the prompt changes nothing: the box keeps what
    was typed, the stage what it shows."""
    analysis = drawing.analysis
    if analysis is None:
        return None, None, [], no_update, HIDDEN, no_update, HIDDEN, "", True, []
    last = len(analysis.tokens) - 1
    if drawing.new:
        return last, last, *stage(analysis, last, drawing.data["id"])
    position = drawing.values[BOX]
    if position is None or position != int(position) or not 0 <= position <= last:
        return (no_update,) * len(OUTPUTS)
    return no_update, no_update, *stage(analysis, int(position), drawing.data["id"])


VIEWS = Views(OUTPUTS, draw, reads=(Input("embed-position", "value"),))


def tour_text(lm: LoadedModel) -> str:
    """What the tour says of this stage, for this model."""
    card = lm.card
    if card.rotary:
        return (
            f"{card.name} adds nothing for position here: it uses rotary positions (RoPE), which "
            "rotate each query and key inside attention by an angle that grows with the position. "
            "So the token's own vector is all that enters layer 0, at any position."
        )
    return (
        f"{card.name} adds a learned position vector to each token's vector "
        f"({card.context_length:,} positions, one vector each), so the same word at two places "
        "enters layer 0 as two different vectors. Pick another token in the menu to compare."
    )
