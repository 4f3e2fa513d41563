"""Stage 3, attention: the head grid, one head beside it, the step view (why a head attends), the
token view (where one token reads from), one layer, and the model view (every head).

Every view follows the page's `focus` store: `focus.head` is the open head (a grid cell, a
thumbnail, the layer view or a shared link sets it), `focus.position` the followed query token.
"""

from __future__ import annotations

from dash import Dash, Input, Output, State, dcc, html, no_update

from ....service import Service
from .. import new_analysis, section
from . import grid, head, layer, lines, model_view, steps, token_view
from .cells import pick_store
from .grid import CATEGORY_VIEWS, EXPLAIN, head_grid, kv_groups


def layout() -> html.Section:
    return section(
        3,
        "Attention",
        EXPLAIN,
        grid.controls(),
        html.Div(id="head-legend"),
        html.Div(
            [html.Div(id="head-grid-body", className="attn-grid-side"), head.layout()],
            className="attn-split",
        ),
        pick_store("head-pick"),
        dcc.Store(id="head-shown"),
        dcc.Store(id="attn-drawn"),  # the analysis id the stage's views were last drawn for
        dcc.Store(id="head-scrolled"),
        steps.layout(),
        token_view.layout(),
        lines.layout(),
        html.Div(id="head-categories"),
        dcc.Store(id="head-profile-asked"),  # the analysis whose model's profile is measured
        layer.layout(),
        model_view.layout(),
    )


def register(app: Dash, service: Service) -> None:
    for view in (grid, head, steps, token_view, lines, layer, model_view):
        view.register(app, service)

    @app.callback(
        *grid.OUTPUTS,
        *head.OUTPUTS,
        *steps.OUTPUTS,
        token_view.CHOICES,
        token_view.OUTPUT,
        *layer.OUTPUTS,
        model_view.OUTPUT,
        Output("attn-drawn", "data"),
        Input("focus", "data"),
        Input("analysis", "data"),
        State("attn-drawn", "data"),
        State("head-shown", "data"),
        State("attn-query", "value"),
        State("attn-query", "max"),
        State("attn-overlay", "value"),
        State("layer-select", "value"),
        State("layer-view", "open"),
        State("model-view-box", "open"),
        prevent_initial_call="initial_duplicate",
    )
    def follow(focus, data, drawn, shown, query, query_max, overlay, layer_shown, layer_open,
               model_open):  # fmt: skip
        """Every view of the stage for a new analysis or a new focus, in ONE request: each
        callback costs the page's renderer a round of updates over all its components, and
        the browser opens at most six requests at once. The views' own controls have their own
        callbacks. Whether the analysis is new: `new_analysis`, from `attn-drawn`."""
        analysis = service.stored(data)
        key = (data or {}).get("id")
        new = new_analysis(data, drawn)
        return (
            *(grid.draw(analysis, data) if new else (no_update,) * len(grid.OUTPUTS)),
            *head.draw(analysis, data, focus, shown),
            *steps.draw(analysis, data, focus, query, query_max),
            token_view.choices(analysis) if new else no_update,
            token_view.draw(analysis, focus, overlay),
            *layer.draw(analysis, focus, layer_shown, layer_open, "analysis" if new else "focus"),
            model_view.draw(analysis, model_open) if new else no_update,
            key if new else no_update,
        )


__all__ = ["CATEGORY_VIEWS", "head_grid", "kv_groups", "layout", "register"]
