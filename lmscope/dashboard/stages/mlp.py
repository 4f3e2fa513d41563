"""Stage 4, MLP: the expand-and-compress shape (gated where the family gates it), and how much
each sublayer wrote where."""

from __future__ import annotations

from dash import Output, html, no_update

from ...core.card import ModelCard
from ...core.model import LoadedModel
from .. import figures
from ..static import static
from . import HIDDEN, SHOWN, Drawing, Views, graph, ready, section

EXPLAIN = (
    "After attention, every token passes through its own small feed-forward network, the [[MLP]]: "
    "it widens the vector (usually 4x), applies a [[non-linearity|activation]], and narrows it "
    "back. MLPs are "
    "thought to hold much of what the model knows. Attention and MLP do not replace the token's "
    "vector: each adds its output to a running sum, the [[residual stream]]. The heatmaps show how "
    "much (the length of what was added) each attention and MLP layer wrote at each position. "
    "Real models write a few huge vectors (often at the first token, 'massive activations'); "
    "then the colour switches to a log scale, as the figure's subtitle says, so the rest stays "
    "visible."
)
GATED = (
    "This model's MLP is gated (GLU-style): two projections widen the vector side by side, the "
    "gate goes through {act} and multiplies the other (up) projection element by element, so "
    "the gate decides how much of each of the {mlp:,} features passes; the down projection "
    "narrows the product back to {d:,}. Three weight matrices instead of two."
)


def _box(size: int, label: str, widest: int) -> html.Div:
    return html.Div(
        [html.Strong(f"{size:,}"), html.Span(label)],
        className="mlp-box",
        style={"height": f"{max(2.5, 9 * size / widest):.1f}rem"},
    )


def shape(card: ModelCard, gated: bool = False) -> html.Div:
    """The MLP as boxes whose heights follow its widths: d -> mlp -> d, or for a gated MLP
    d -> (gate with its activation) x (up) -> down -> d."""
    widest = max(card.mlp_size, card.hidden_size)
    if gated:
        middle = [
            html.Div(
                [
                    _box(card.mlp_size, f"gate, then {card.activation}", widest),
                    html.Span("× (element by element)", className="mlp-arrow"),
                    _box(card.mlp_size, "up", widest),
                ],
                style={"display": "flex", "flexDirection": "column", "alignItems": "center",
                       "gap": "0.3rem"},
            ),
            html.Span("→ down (compress) →", className="mlp-arrow"),
        ]  # fmt: skip
        title = (
            f"{card.hidden_size} -> gate {card.mlp_size} ({card.activation}) x up "
            f"{card.mlp_size} -> down {card.hidden_size}"
        )
    else:
        middle = [
            _box(card.mlp_size, card.activation, widest),
            html.Span("→ compress →", className="mlp-arrow"),
        ]
        title = f"{card.hidden_size} -> {card.mlp_size} -> {card.hidden_size}"
    return html.Div(
        [
            _box(card.hidden_size, "in", widest),
            html.Span("→ expand →", className="mlp-arrow"),
            *middle,
            _box(card.hidden_size, "out", widest),
        ],
        className="mlp-shape",
        title=title,
        id="mlp-shape-diagram",
    )


def layout() -> html.Section:
    return section(
        4,
        "MLP",
        EXPLAIN,
        html.Div(id="mlp-body"),
        graph("residual-writes", "lmscope-residual-writes"),
    )


def draw(drawing: Drawing) -> tuple:
    """The MLP's shape and the residual writes (`VIEWS`)."""
    analysis, data = drawing.analysis, drawing.data
    if analysis is None:
        return html.P("Press Analyze to see the MLPs.", className="empty"), no_update, HIDDEN
    card = analysis.lm.card
    gated = analysis.lm.card.gated_mlp
    if gated:
        text = [
            f"Each of the {card.layers} layers has one gated MLP: gate and up "
            f"{card.hidden_size:,} → {card.mlp_size:,}, {card.activation} on the gate, "
            f"down {card.mlp_size:,} → {card.hidden_size:,}. ",
            GATED.format(act=card.activation, mlp=card.mlp_size, d=card.hidden_size),
        ]
    else:
        text = (
            f"Each of the {card.layers} layers has one MLP: "
            f"{card.hidden_size:,} → {card.mlp_size:,} → {card.hidden_size:,}, "
            f"with {card.activation} in the middle."
        )
    body = [static([html.P(text), shape(card, gated)]), ready(data["id"])]
    return body, figures.residual_writes(analysis), SHOWN


VIEWS = Views(
    (
        Output("mlp-body", "children"),
        Output({"kind": "figure", "name": "residual-writes"}, "figure"),
        Output({"kind": "figure", "name": "residual-writes"}, "style"),
    ),
    draw,
)


def tour_text(lm: LoadedModel) -> str:
    """What the tour says of this stage, for this model."""
    card = lm.card
    if lm.card.gated_mlp:
        return (
            f"Each layer's MLP is gated ({'SwiGLU' if card.activation == 'SiLU' else 'GLU'}): "
            f"the {card.hidden_size:,} numbers are widened "
            f"twice to {card.mlp_size:,}, one copy goes through {card.activation} and multiplies "
            "the other, and the product is narrowed back. The boxes' heights follow the widths."
        )
    return (
        f"Each layer's MLP widens the {card.hidden_size:,} numbers to {card.mlp_size:,}, applies "
        f"{card.activation}, and narrows them back. The heatmap below shows how much each "
        "attention and MLP layer wrote at each position."
    )
