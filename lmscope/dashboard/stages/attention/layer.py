"""One layer, all heads: side by side with token labels; a click on one opens it. The layer shown
follows the open head (`focus.layer`)."""

from __future__ import annotations

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from ....api.service import Service
from .. import HIDDEN, SHOWN, graph, stored
from .grid import focus_head
from .plots import LAYER_VIEW_WINDOW, layer_heads

LAYER_FIGURE = {"kind": "figure", "name": "layer-heads"}


def layout() -> html.Details:
    return html.Details(
        [
            html.Summary("Layer view: one layer, all heads side by side"),
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
        className="view-box",
    )


def register(app: Dash, service: Service) -> None:
    @app.callback(
        Output("layer-select", "options"),
        Output("layer-select", "value"),
        Output(LAYER_FIGURE, "figure"),
        Output(LAYER_FIGURE, "style"),
        Input("analysis", "data"),
        Input("focus", "data"),
        Input("layer-select", "value"),
        Input("layer-view", "open"),
    )
    def draw(data, focus, current, opened):
        """The layer of the open head (`focus.layer`), or the one picked; drawn only while the
        view is open, and only when the layer or the analysis changes."""
        analysis = stored(service, data)
        if analysis is None:
            return [], None, no_update, HIDDEN
        layers = analysis.lm.layers
        wanted = (focus or {}).get("layer")
        if ctx.triggered_id == "layer-select" or not isinstance(wanted, int):
            wanted = current
        if not isinstance(wanted, int) or not 0 <= wanted < layers:
            wanted = 0
        new_analysis = ctx.triggered_id in (None, "analysis")
        if ctx.triggered_id == "focus" and wanted == current:  # only a new layer redraws
            return no_update, no_update, no_update, no_update
        options = [{"label": f"Layer {l}", "value": l} for l in range(layers)]
        figure, style = (layer_heads(analysis, wanted), SHOWN) if opened else (no_update, HIDDEN)
        return (
            options if new_analysis else no_update,
            wanted if wanted != current else no_update,
            figure,
            style,
        )

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
