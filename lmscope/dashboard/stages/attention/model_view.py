"""The model view: every head of every layer as a small thumbnail of its pattern (CircuitsVis and
BertViz show models this way); a click opens that head. One Tab stop, arrow keys within."""

from __future__ import annotations

from dash import ALL, Dash, Input, Output, ctx, html, no_update

from ....api.service import Service
from ....core.heads import LABELS, head_name
from .. import stored
from .grid import focus_head
from .plots import THUMB, thumbnails


def layout() -> html.Details:
    return html.Details(
        [
            html.Summary("Model view: every head of every layer at once"),
            html.Div(
                html.P("Press Analyze to see every head.", className="empty"), id="model-view"
            ),
        ],
        id="model-view-box",
        className="model-view-box",
    )


def register(app: Dash, service: Service) -> None:
    @app.callback(Output("model-view", "children"), Input("analysis", "data"))
    def draw(data):
        analysis = stored(service, data)
        if analysis is None:
            return html.P("Press Analyze to see every head.", className="empty")
        count = len(analysis.tokens)
        images, report = thumbnails(analysis), analysis.heads
        heads = analysis.heads_per_layer
        cells = [html.Div("", className="grid-corner")]
        cells += [html.Div(f"H{h}", className="grid-label") for h in range(heads)]
        for layer, row in enumerate(images):
            cells.append(html.Div(f"L{layer}", className="grid-label"))
            for head, src in enumerate(row):
                name = head_name(layer, head)
                cells.append(
                    html.Button(
                        html.Img(src=src, alt=f"pattern of {name}"),
                        id={"kind": "thumb", "layer": layer, "head": head},
                        className="thumb roving-cell",
                        tabIndex=0 if layer == head == 0 else -1,
                        title=f"{name}: {LABELS[report.categories[layer][head]]}; click to open",
                        **{"data-thumb": name},
                    )
                )
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
            html.Div(
                cells,
                className="thumb-grid roving-grid",
                role="group",
                style={"gridTemplateColumns": f"2.6rem repeat({heads}, 3.2rem)"},
                **{"aria-label": "every head as a thumbnail", "data-cols": str(heads)},
            ),
        ]

    @app.callback(
        Output("focus", "data", allow_duplicate=True),
        Input({"kind": "thumb", "layer": ALL, "head": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def pick(_clicks):
        trigger = ctx.triggered_id
        if not isinstance(trigger, dict) or not ctx.triggered[0]["value"]:
            return no_update
        return focus_head(trigger["layer"], trigger["head"])
