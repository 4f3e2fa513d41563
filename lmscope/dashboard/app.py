"""The Dash app: one page over the `Service` it is given (the web server, `lmscope.web.server`,
mounts the JSON API on the same Flask server).

The browser keeps only the analysis id and small JSON (dcc.Store); every figure is built on the
server from the stored `Analysis`, for what is on screen.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode

from dash import ALL, Dash, Input, Output, Patch, State, ctx, dcc, html, no_update, set_props

from ..core.catalog import DEMO_ID
from ..core.errors import LmscopeError
from ..core.jobs import Cancelled
from ..core.loading import gib, inspect_model, memory_needed
from ..core.model_cache import ModelCache
from ..service import Service
from . import glossary, layout, progress, tour
from .figures import graph_config
from .progress import BUSY_POLL_MS
from .share import export_name
from .share import register as register_share
from .stages import attention, embeddings, investigate, mlp, output, register_views, tokens

ASSETS = Path(__file__).resolve().parent / "assets"
STAGES = (embeddings, attention, investigate)  # with callbacks of their own
# Views drawn for a new analysis in one request (stages.register_views)
VIEWS = (tokens.VIEWS, attention.CATEGORY_VIEWS, mlp.VIEWS, output.VIEWS)
_MAX_CLIENTS = 1000  # tabs whose newest request number is kept


def _query(search: str | None) -> dict[str, str]:
    parsed = parse_qs((search or "").lstrip("?"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def _message(text: str, ok: bool) -> html.Div:
    return html.Div(text, className="message ok" if ok else "message error")


def _ask_to_download(model_id: str, prompt: str | None) -> html.Div | None:
    """Show the confirm box for a model a link names that is not on this machine (its size from
    its config alone); an unusable model is reported at once, and nothing is downloaded."""
    try:
        config, _, card = inspect_model(model_id)
    except LmscopeError as error:
        return _message(str(error), False)
    half = str(getattr(config, "dtype", "")).endswith(("float16", "bfloat16"))
    download = card.parameters * (2 if half else 4)
    set_props(
        "confirm-load-text",
        {
            "children": f"This link asks to load {card.name} ({card.parameters / 1e6:,.0f}M "
            f"parameters): a download of about {gib(download)} from the Hugging Face "
            f"hub, and about {gib(memory_needed(card))} of memory. "
        },
    )
    set_props("pending-load", {"data": {"model": model_id, "prompt": prompt}})
    set_props("confirm-load", {"hidden": False})
    return None


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
        return layout.page(ModelCache.key(lm.model_id), lm.card, service.notice)

    app.layout = page
    register_views(app, service, VIEWS)
    for stage in STAGES:
        stage.register(app, service)
    glossary.register(app, service)
    tour.register(app, service)
    _register_controls(app, service, {})
    register_share(app, service)
    return app


def _register_controls(app: Dash, service: Service, latest: dict[str, int]) -> None:
    """The page's controls; `latest` holds each tab's newest request number, so that a request
    superseded while it ran (Analyze pressed again: the older one is cancelled, see progress.py)
    returns nothing and the newest one wins."""
    progress.register(app, service)

    @app.callback(
        Output("model", "data"),
        Output("analysis", "data"),
        Output("message", "children"),
        Output("url", "search"),
        Output("model-picker", "value"),
        Output("model-picker", "options"),
        Output("prompt", "value"),
        Output("model-card", "children"),
        Input("url", "search"),
        Input("model-picker", "value"),
        Input("model-load", "n_clicks"),
        Input("model-custom", "n_submit"),
        Input("analyze", "n_clicks"),
        Input({"kind": "starter", "index": ALL}, "n_clicks"),
        Input("model-confirm", "n_clicks"),
        State("model-custom", "value"),
        State("prompt", "value"),
        State("model", "data"),
        State("analysis", "data"),
        State("model-picker", "options"),
        State("client", "data"),
        State("pending-load", "data"),
        running=[(Output("progress-poll", "interval"), BUSY_POLL_MS, BUSY_POLL_MS)],
    )
    def control(search, picked, _load, _submit, _analyze, starters, _confirm, custom, prompt,
                model, shown, options, client, pending):  # fmt: skip
        """Every user action that loads a model or runs an analysis goes through here."""
        trigger = ctx.triggered_id
        target, text, new_prompt = model["id"], None, no_update
        set_props("confirm-load", {"hidden": True})
        if trigger not in ("model-picker", "url"):  # a URL the page itself writes keeps it
            set_props("starter-hint", {"hidden": True})
        if trigger is None or trigger == "url":
            query = _query(search)
            target = query.get("model") or model["id"]
            text = query.get("prompt")
            same_model = ModelCache.key(target) == model["id"]
            if (text is None and same_model) or (shown and same_model and text == shown["prompt"]):
                return (no_update,) * 8
            new_prompt = text if text is not None else no_update
            if not (same_model or service.has_on_disk(target)):
                # A link may not start a download: the visitor confirms it with one click.
                return (no_update, no_update, _ask_to_download(target, text)) + (no_update,) * 5
        elif trigger == "model-confirm":
            if not pending:
                return (no_update,) * 8
            target, text = pending["model"], pending["prompt"]
            new_prompt = text if text is not None else no_update
        elif trigger == "model-picker":
            if picked == model["id"]:
                return (no_update,) * 8
            target, text = picked, (prompt if shown else None)
        elif trigger in ("model-load", "model-custom"):
            target, text = (custom or "").strip(), (prompt if shown else None)
            if not target:
                return (no_update, no_update, _message("Type a model id first.", False)) + (
                    no_update,
                ) * 5
        elif trigger == "analyze":
            text = prompt or ""
        elif isinstance(trigger, dict) and any(starters):
            starter = layout.STARTERS[trigger["index"]]
            text = new_prompt = starter.prompt
            set_props("starter-hint", {"children": starter.look_for, "hidden": False})
        else:
            return (no_update,) * 8

        if len(latest) > _MAX_CLIENTS:
            latest.clear()
        ticket = latest[client] = latest.get(client, 0) + 1
        with service.jobs.job(
            client, "analyze", replaces_all=True
        ) as job:  # older work is cancelled
            try:
                result = load_and_analyze(target, text, new_prompt, model, options, job)
            except Cancelled as cancelled:  # by the Cancel button: the page keeps what it shows
                result = (no_update, no_update, _message(str(cancelled), False)) + (no_update,) * 5
        if latest.get(client, ticket) != ticket:  # a newer request from this tab runs or won
            return (no_update,) * 8
        return result

    def load_and_analyze(target, text, new_prompt, model, options, job) -> tuple:
        """Load `target` (reporting its progress as the job's label), analyze `text` if given."""

        def report(line: str) -> None:
            job.label = line

        started = time.perf_counter()
        try:
            lm = service.models.get(target, report)
        except Cancelled:
            raise
        except LmscopeError as error:
            return (no_update, no_update, _message(str(error), False), no_update, model["id"]) + (
                no_update,
            ) * 3
        key = ModelCache.key(target)
        new_model = {"id": key, "name": lm.card.name}
        changed = key != model["id"]
        names = {o["value"]: o["label"] for o in options} | {key: lm.card.name}
        result = [
            new_model if changed else no_update,  # rewriting it would redraw what follows it
            no_update,
            _message(f"{lm.card.name} is loaded.", True),
            "?" + urlencode({"model": key}),
            key,
            layout.model_options(names) if changed else no_update,
            new_prompt,
            layout.card_view(lm.card) if changed else no_update,
        ]
        if text is not None:
            report(f"Analyzing the prompt with {lm.card.name}")
            try:
                analysis_id, analysis = service.analyze(key, text, report)
            except Cancelled:
                raise
            except LmscopeError as error:
                result[2] = _message(str(error), False)
            else:
                seconds = time.perf_counter() - started
                result[1] = {"id": analysis_id, "model": key, "prompt": text}
                result[2] = _message(
                    f"Analyzed {len(analysis.tokens):,} tokens with {lm.card.name} "
                    f"in {seconds:.1f} s.",
                    True,
                )
                result[3] = "?" + urlencode({"model": key, "prompt": text})
        return tuple(result)

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
