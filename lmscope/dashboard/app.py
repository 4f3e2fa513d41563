"""The Dash app: one page over the `Service` it is given (the web server, `lmscope.web.server`,
mounts the JSON API on the same Flask server).

The browser keeps only the analysis id and small JSON (dcc.Store); every figure is built on the
server from the stored `Analysis`, for what is on screen.
"""

from __future__ import annotations

import json
from pathlib import Path

from dash import ALL, Dash, Input, Output, Patch, State, ctx, dcc, html, no_update

from ..core.catalog import DEMO_ID
from ..core.errors import LmscopeError
from ..core.model_cache import ModelCache
from ..service import Service
from . import controls, glossary, layout, progress, runs, tour
from .figures import graph_config
from .share import export_name
from .share import register as register_share
from .stages import attention, embeddings, flow, investigate, mlp, output, register_views, tokens

ASSETS = Path(__file__).resolve().parent / "assets"
STAGES = (flow, attention, investigate, runs)  # with callbacks of their own, besides views
# Views drawn for a new analysis in one request (stages.register_views); the attention stage's
# views are a group of their own (the browser sends the two requests at once)
VIEWS = (
    flow.VIEWS,
    tokens.VIEWS,
    embeddings.VIEWS,
    attention.CATEGORY_VIEWS,
    mlp.VIEWS,
    output.VIEWS,
)


def create_app(service: Service) -> Dash:
    """The dashboard over `service`, opening on its served model (`Service.serve`) with its
    notice, if any."""
    app = Dash(
        __name__,
        title="lmscope",
        assets_folder=str(ASSETS),
        serve_locally=True,
        update_title=None,
        suppress_callback_exceptions=True,
    )

    def page() -> html.Div:
        try:
            lm = service.model(None)
        except LmscopeError:  # e.g. the operator's folder model was evicted from the cache
            lm = service.models.get(DEMO_ID)
        key = ModelCache.key(lm.model_id)
        return layout.page(key, lm.card, service.notice, service.catalog())

    app.layout = page
    register_views(app, service, VIEWS, "views-drawn")
    progress.register(app, service)
    for stage in STAGES:
        stage.register(app, service)
    glossary.register(app, service)
    tour.register(app, service)
    controls.register(app, service)
    _register_files(app, service)
    register_share(app, service)
    return app


def _register_files(app: Dash, service: Service) -> None:
    """The analysis as a JSON file, and each figure's export settings."""

    @app.callback(
        Output("download", "data"),
        Input("download-json", "n_clicks"),
        State("analysis", "data"),
        prevent_initial_call=True,
    )
    def download(_clicks, data):
        analysis = service.stored(data)
        if analysis is None:
            return no_update
        name = data["model"].replace("/", "_")
        return dcc.send_string(
            json.dumps(analysis.to_dict(), ensure_ascii=False), f"lmscope-{name}.json"
        )

    @app.callback(
        Output({"kind": "figure", "name": ALL}, "config"),
        Output({"kind": "figure", "name": ALL}, "figure"),
        Input("export-format", "value"),
        Input("focus", "data"),
        Input("model", "data"),
        State({"kind": "figure", "name": ALL}, "config"),
    )
    def export_format(fmt, focus, model, current):
        """At page load, then for new export settings, a new view or another model (files are
        named after what they show, see share.export_name; figures in closed tabs are in the
        layout too); a one-field patch makes each changed figure pick them up. Not an input: the
        analysis, which names no file."""
        configs, touches = [], []
        for slot, old in zip(ctx.outputs_list[0], current, strict=True):
            config = graph_config(export_name(slot["id"]["name"], model["id"], focus), fmt)
            if config == old:
                configs.append(no_update)
                touches.append(no_update)
                continue
            configs.append(config)
            touch = Patch()
            touch["layout"]["meta"] = fmt
            touches.append(touch)
        return configs, touches
