"""Stage 4, MLP: the expand-and-compress shape, and how much each sublayer wrote where."""

from __future__ import annotations

from dash import Dash, Input, Output, html, no_update

from ...api.service import Service
from ...core.card import ModelCard
from .. import figures
from . import HIDDEN, SHOWN, graph, ready, section, stored

EXPLAIN = (
    "After attention, every token passes through its own small feed-forward network, the MLP: it "
    "widens the vector (usually 4x), applies a non-linearity, and narrows it back. MLPs are "
    "thought to hold much of what the model knows. Attention and MLP do not replace the token's "
    "vector: each adds its output to a running sum, the residual stream. The heatmaps show how "
    "much (the length of what was added) each attention and MLP layer wrote at each position."
)


def shape(card: ModelCard) -> html.Div:
    """The MLP as three boxes whose heights follow its widths: d -> mlp -> d."""
    widest = max(card.mlp_size, card.hidden_size)

    def box(size: int, label: str) -> html.Div:
        return html.Div(
            [html.Strong(f"{size:,}"), html.Span(label)],
            className="mlp-box",
            style={"height": f"{max(2.5, 9 * size / widest):.1f}rem"},
        )

    return html.Div(
        [
            box(card.hidden_size, "in"),
            html.Span("→ expand →", className="mlp-arrow"),
            box(card.mlp_size, card.activation),
            html.Span("→ compress →", className="mlp-arrow"),
            box(card.hidden_size, "out"),
        ],
        className="mlp-shape",
        title=f"{card.hidden_size} -> {card.mlp_size} -> {card.hidden_size}",
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


def register(app: Dash, service: Service) -> None:
    @app.callback(
        Output("mlp-body", "children"),
        Output({"kind": "figure", "name": "residual-writes"}, "figure"),
        Output({"kind": "figure", "name": "residual-writes"}, "style"),
        Input("analysis", "data"),
    )
    def draw(data):
        analysis = stored(service, data)
        if analysis is None:
            return html.P("Press Analyze to see the MLPs.", className="empty"), no_update, HIDDEN
        card = analysis.lm.card
        body = [
            html.P(
                f"Each of the {card.layers} layers has one MLP: "
                f"{card.hidden_size:,} → {card.mlp_size:,} → {card.hidden_size:,}, "
                f"with {card.activation} in the middle."
            ),
            shape(card),
            ready(data["id"]),
        ]
        return body, figures.residual_writes(analysis), SHOWN
