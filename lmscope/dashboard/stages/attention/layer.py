"""One layer, all heads: side by side with token labels; a click on one opens it. The layer shown
follows the open head (`focus.layer`)."""

from __future__ import annotations

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from ....core.analysis import Analysis
from ....service import Service
from .. import HIDDEN, SHOWN, graph
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


OUTPUTS = (
    Output("layer-select", "options"),
    Output("layer-select", "value"),
    Output(LAYER_FIGURE, "figure"),
    Output(LAYER_FIGURE, "style"),
)


def draw(analysis: Analysis | None, focus: dict | None, current, opened, trigger: str | None):
    """The layer of the open head (`focus.layer`), or the one picked (`OUTPUTS`; `current`: the
    menu's layer, `trigger`: "analysis", "focus" or the view's own "layer-select"); drawn only
    while the view is open, and only when the layer or the analysis changes."""
    if analysis is None:
        return [], None, no_update, HIDDEN
    layers = analysis.lm.layers
    wanted = (focus or {}).get("layer")
    if trigger == "layer-select" or not isinstance(wanted, int):
        wanted = current
    if not isinstance(wanted, int) or not 0 <= wanted < layers:
        wanted = 0
    if trigger == "focus" and wanted == current:  # only a new layer redraws
        return no_update, no_update, no_update, no_update
    options = [{"label": f"Layer {l}", "value": l} for l in range(layers)]
    figure, style = (layer_heads(analysis, wanted), SHOWN) if opened else (no_update, HIDDEN)
    return (
        options if trigger in (None, "analysis") else no_update,
        wanted if wanted != current else no_update,
        figure,
        style,
    )


def register(app: Dash, service: Service) -> None:
    @app.callback(
        *(Output(o.component_id, o.component_property, allow_duplicate=True) for o in OUTPUTS),
        Input("layer-select", "value"),
        Input("layer-view", "open"),
        State("focus", "data"),
        State("analysis", "data"),
        prevent_initial_call=True,
    )
    def picked(current, opened, focus, data):
        return draw(service.stored(data), focus, current, opened, ctx.triggered_id)

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
