"""The model view: every head of every layer as a small thumbnail of its pattern (CircuitsVis and
BertViz show models this way); a click opens that head. One Tab stop, arrow keys within."""

from __future__ import annotations

from dash import Dash, Input, Output, State, html, no_update

from ....core.analysis import Analysis
from ....core.heads import LABELS, head_name
from ....service import Service
from .cells import Cell, cell_grid, pick_store
from .grid import focus_head
from .plots import THUMB, thumbnails


def layout() -> html.Details:
    return html.Details(
        [
            html.Summary("Model view: every head of every layer at once"),
            html.Div(
                html.P("Press Analyze to see every head.", className="empty"), id="model-view"
            ),
            pick_store("thumb-pick"),
        ],
        id="model-view-box",
        className="view-box",
    )


OUTPUT = Output("model-view", "children")


def draw(analysis: Analysis | None, opened: bool | None):
    """Built when the view is open: a model's thumbnails cost time nobody asked for."""
    if analysis is None:
        return html.P("Press Analyze to see every head.", className="empty")
    if not opened:
        return html.P("Open to draw every head.", className="empty")
    count = len(analysis.tokens)
    report = analysis.heads
    rows = [
        [
            Cell(
                layer,
                head,
                classes="thumb",
                title=f"{head_name(layer, head)}: "
                f"{LABELS[report.categories[layer][head]]}; click to open",
                data={"thumb": head_name(layer, head)},
                image=(src, f"pattern of {head_name(layer, head)}"),
            )
            for head, src in enumerate(row)
        ]
        for layer, row in enumerate(thumbnails(analysis))
    ]
    window = (
        "the whole prompt"
        if count <= THUMB
        else f"how the last {THUMB} of the {count:,} tokens read each other"
    )
    return [
        html.P(
            f"Each thumbnail is one head's pattern over {window} (rows read, columns are "
            "read; each scaled to its own largest weight). Click one, or Tab to them and use "
            "the arrow keys and Enter, to open that head above.",
            className="hint",
        ),
        cell_grid(
            rows,
            pick="thumb-pick",
            label="every head as a thumbnail",
            classes="thumb-grid",
            columns=f"2.6rem repeat({analysis.heads_per_layer}, 3.2rem)",
        ),
    ]


def register(app: Dash, service: Service) -> None:
    @app.callback(
        Output("model-view", "children", allow_duplicate=True),
        Input("model-view-box", "open"),
        State("analysis", "data"),
        prevent_initial_call=True,
    )
    def opened(is_open, data):
        return draw(service.stored(data), is_open)

    @app.callback(
        Output("focus", "data", allow_duplicate=True),
        Input("thumb-pick", "data"),
        prevent_initial_call=True,
    )
    def pick(chosen):
        if not chosen:
            return no_update
        return focus_head(chosen["layer"], chosen["head"])
