"""One layer, all heads: side by side with token labels; a click on one opens it. The layer shown
follows the open head (`focus.layer`)."""

from __future__ import annotations

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from ....api.service import Service
from .. import HIDDEN, SHOWN, graph, stored
from .grid import focus_head
from .plots import LAYER_VIEW_WINDOW, layer_heads

LAYER_FIGURE = {"kind": "figure", "name": "layer-heads"}


def layout() -> html.Div:
    return html.Div(
        [
            html.H3("One layer, all heads"),
            html.Label(["Layer ", dcc.Dropdown(id="layer-select", clearable=False)]),
            html.P(
                f"Each square is one head's pattern; prompts longer than {LAYER_VIEW_WINDOW} "
                f"tokens show how their last {LAYER_VIEW_WINDOW} tokens read each other. The "
                "colour scale runs up to the largest weight shown. Click a head to open it.",
                className="hint",
            ),
            graph("layer-heads", "lmscope-attention-layer"),
        ],
        id="layer-view",
    )


def register(app: Dash, service: Service) -> None:
    @app.callback(
        Output("layer-select", "options"),
        Output("layer-select", "value"),
        Input("analysis", "data"),
        Input("focus", "data"),
        State("layer-select", "value"),
    )
    def choices(data, focus, current):
        analysis = stored(service, data)
        if analysis is None:
            return [], None
        layers = [{"label": f"Layer {l}", "value": l} for l in range(analysis.lm.layers)]
        wanted = (focus or {}).get("layer")
        if not isinstance(wanted, int) or not 0 <= wanted < analysis.lm.layers:
            wanted = current if isinstance(current, int) else 0
        if ctx.triggered_id == "focus":  # only a new layer redraws the view
            return no_update, (no_update if wanted == current else wanted)
        return layers, wanted

    @app.callback(
        Output(LAYER_FIGURE, "figure"),
        Output(LAYER_FIGURE, "style"),
        Input("layer-select", "value"),
        State("analysis", "data"),
    )
    def open_layer(layer, data):
        analysis = stored(service, data)
        if analysis is None or layer is None or layer >= analysis.lm.layers:
            return no_update, HIDDEN
        return layer_heads(analysis, layer), SHOWN

    @app.callback(
        Output("focus", "data", allow_duplicate=True),
        Input(LAYER_FIGURE, "clickData"),
        State("layer-select", "value"),
        prevent_initial_call=True,
    )
    def pick(click, layer):
        try:
            head = int(click["points"][0]["curveNumber"])
        except (TypeError, KeyError, IndexError, ValueError):
            return no_update
        return focus_head(layer, head)
