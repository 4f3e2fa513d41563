"""Stage 3, attention: the head grid, one head beside it, the step view (why a head attends), the
token view (where one token reads from), one layer, and the model view (every head).

Every view follows the page's `focus` store: `focus.head` is the open head (a grid cell, a
thumbnail, the layer view or a shared link sets it), `focus.position` the followed query token.
"""

from __future__ import annotations

from dash import Dash, State, dcc, html

from ....service import Service
from .. import Drawing, Views, register_views, section
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


def _value(drawing: Drawing, key: str) -> object:
    return drawing.values[key]


# The stage's views, drawn in ONE request for a new analysis or a new focus (`register_views`),
# a group of their own beside the other stages' (so the browser sends the two at once); the
# views' own controls have their own callbacks.
VIEWS = (
    Views(grid.OUTPUTS, lambda d: grid.draw(d.analysis, d.data)),
    Views(
        head.OUTPUTS,
        lambda d: head.draw(d.analysis, d.data, d.focus, _value(d, "head-shown.data")),
        follows_focus=True,
        reads=(State("head-shown", "data"),),
    ),
    Views(
        steps.OUTPUTS,
        lambda d: steps.draw(
            d.analysis, d.data, d.focus, _value(d, "attn-query.value"), _value(d, "attn-query.max")
        ),
        follows_focus=True,
        reads=(State("attn-query", "value"), State("attn-query", "max")),
    ),
    Views((token_view.CHOICES,), lambda d: (token_view.choices(d.analysis),)),
    Views(
        (token_view.OUTPUT,),
        lambda d: (token_view.draw(d.analysis, d.focus, _value(d, "attn-overlay.value")),),
        follows_focus=True,
        reads=(State("attn-overlay", "value"),),
    ),
    lines.VIEWS,
    Views(
        layer.OUTPUTS,
        lambda d: layer.draw(
            d.analysis,
            d.focus,
            _value(d, "layer-select.value"),
            _value(d, "layer-view.open"),
            "analysis" if d.new else "focus",
        ),
        follows_focus=True,
        reads=(State("layer-select", "value"), State("layer-view", "open")),
    ),
    Views(
        (model_view.OUTPUT,),
        lambda d: (model_view.draw(d.analysis, _value(d, "model-view-box.open")),),
        reads=(State("model-view-box", "open"),),
    ),
)


def register(app: Dash, service: Service) -> None:
    for view in (grid, head, steps, token_view, lines, layer, model_view):
        view.register(app, service)
    register_views(app, service, VIEWS, "attn-drawn")


__all__ = ["CATEGORY_VIEWS", "head_grid", "kv_groups", "layout", "register"]
