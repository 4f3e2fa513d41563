"""Stage 3, attention: the head grid, one head beside it, the step view (why a head attends), the
token view (where one token reads from), one layer, and the model view (every head).

Every view follows the page's `focus` store: `focus.head` is the open head (a grid cell, a
thumbnail, the layer view or a shared link sets it), `focus.position` the followed query token.
"""

from __future__ import annotations

from dash import Dash, dcc, html

from ....api.service import Service
from .. import section
from . import grid, head, layer, model_view, steps, token_view
from .cells import pick_store
from .grid import EXPLAIN, head_grid, kv_groups


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
        dcc.Store(id="head-scrolled"),
        steps.layout(),
        token_view.layout(),
        html.Div(id="head-categories"),
        layer.layout(),
        model_view.layout(),
    )


def register(app: Dash, service: Service) -> None:
    for view in (grid, head, steps, token_view, layer, model_view):
        view.register(app, service)


__all__ = ["head_grid", "kv_groups", "layout", "register"]
