"""The page's controls: every user action that loads a model or analyzes a prompt (the model
picker and box, Analyze, the starters, a shared link, the download confirmation) goes through
ONE callback, `control`, whose outputs are named.

A request superseded while it ran (Analyze pressed again: the older one is cancelled, see
service/jobs.py) returns nothing and the newest one wins. A link may not start a download: the
server keeps what each tab was asked to confirm, and the confirm button loads only that.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from urllib.parse import parse_qs, urlencode

from dash import ALL, Dash, Input, Output, State, ctx, html, no_update, set_props

from ..core import budget
from ..core.errors import LmscopeError
from ..core.jobs import Cancelled
from ..core.loading import gib
from ..core.model_cache import ModelCache
from ..service import Service
from . import layout
from .progress import BUSY_POLL_MS, refusal

CLIENTS_KEPT = 1000  # tabs whose newest request and pending confirmation are kept

OUTPUTS = {
    "model": Output("model", "data"),
    "analysis": Output("analysis", "data"),
    "message": Output("message", "children"),
    "url": Output("url", "search"),
    "picked": Output("model-picker", "value"),
    "options": Output("model-picker", "options"),
    "prompt": Output("prompt", "value"),
    "card": Output("model-card", "children"),
}
UNCHANGED = dict.fromkeys(OUTPUTS, no_update)


def query(search: str | None) -> dict[str, str]:
    """A page URL's query string as a dict (first value of each key)."""
    parsed = parse_qs((search or "").lstrip("?"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def message(text: str, ok: bool) -> html.Div:
    return html.Div(text, className="message ok" if ok else "message error")


class Bounded(OrderedDict):
    """A dict that forgets its oldest keys past `CLIENTS_KEPT` (one entry per tab)."""

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > CLIENTS_KEPT:
            self.popitem(last=False)


def register(app: Dash, service: Service) -> None:
    latest: Bounded = Bounded()  # tab -> its newest request number
    pending: Bounded = Bounded()  # tab -> (model, prompt) its confirm box asks to load

    def ask_to_download(client: str, model_id: str, prompt: str | None) -> dict:
        """Show the confirm box for a model a link names that is not on this machine (its size
        from its config alone); an unusable model is reported at once; nothing is downloaded."""
        try:
            card, download, memory = service.inspect(model_id)
        except LmscopeError as error:
            return UNCHANGED | {"message": message(str(error), False)}
        text = (
            f"This link asks to load {card.name} ({card.parameters / 1e6:,.0f}M parameters): a "
            f"download of about {gib(download)} from the Hugging Face hub, and about "
            f"{gib(memory)} of memory. "
        )
        pending[client] = (model_id, prompt)
        set_props("confirm-load-text", {"children": text})
        set_props("confirm-load", {"hidden": False})
        return UNCHANGED

    @app.callback(
        output=OUTPUTS,
        inputs={
            "search": Input("url", "search"),
            "picked": Input("model-picker", "value"),
            "load": Input("model-load", "n_clicks"),
            "submit": Input("model-custom", "n_submit"),
            "analyze": Input("analyze", "n_clicks"),
            "starters": Input({"kind": "starter", "index": ALL}, "n_clicks"),
            "confirm": Input("model-confirm", "n_clicks"),
        },
        state={
            "custom": State("model-custom", "value"),
            "prompt": State("prompt", "value"),
            "model": State("model", "data"),
            "shown": State("analysis", "data"),
            "options": State("model-picker", "options"),
            "client": State("client", "data"),
        },
        running=[(Output("progress-poll", "interval"), BUSY_POLL_MS, BUSY_POLL_MS)],
    )
    def control(search, picked, load, submit, analyze, starters, confirm, custom, prompt,
                model, shown, options, client):  # fmt: skip
        """Every user action that loads a model or runs an analysis goes through here."""
        trigger = ctx.triggered_id
        target, text, new_prompt, confirmed = model["id"], None, no_update, False
        set_props("confirm-load", {"hidden": True})
        if trigger not in ("model-picker", "url"):  # a URL the page itself writes keeps it
            set_props("starter-hint", {"hidden": True})
        if trigger is None or trigger == "url":
            keys = query(search)
            target = keys.get("model") or model["id"]
            text = keys.get("prompt")
            same_model = ModelCache.key(target) == model["id"]
            if (text is None and same_model) or (shown and same_model and text == shown["prompt"]):
                return UNCHANGED
            new_prompt = text if text is not None else no_update
            if not (same_model or service.has_on_disk(target)):
                return ask_to_download(client, target, text)
        elif trigger == "model-confirm":
            if client not in pending:  # only what this server asked this tab to confirm
                return UNCHANGED
            target, text = pending.pop(client)
            new_prompt = text if text is not None else no_update
        elif trigger == "model-picker":
            if picked == model["id"]:
                return UNCHANGED
            target, text = picked, (prompt if shown else None)
        elif trigger in ("model-load", "model-custom"):
            target, text = (custom or "").strip(), (prompt if shown else None)
            if not target:
                return UNCHANGED | {"message": message("Type a model id first.", False)}
        elif trigger == "analyze":
            text = prompt or ""
            confirmed = service.jobs.confirmed(client, "analyze")
        elif isinstance(trigger, dict) and any(starters):
            starter = layout.STARTERS[trigger["index"]]
            text = new_prompt = starter.prompt
            set_props("starter-hint", {"children": starter.look_for, "hidden": False})
        else:
            return UNCHANGED

        ticket = latest[client] = latest.get(client, 0) + 1
        with service.jobs.job(client, "analyze", replaces_all=True) as job:  # older work stops
            try:
                with budget.confirmed() if confirmed else contextlib.nullcontext():
                    result = load_and_analyze(target, text, new_prompt, model, options, job)
            except Cancelled as cancelled:  # by the Cancel button: the page keeps what it shows
                result = UNCHANGED | {"message": message(str(cancelled), False)}
        if latest.get(client, ticket) != ticket:  # a newer request from this tab runs or won
            return UNCHANGED
        return result

    def load_and_analyze(target, text, new_prompt, model, options, job) -> dict:
        """Load `target` (reporting its progress as the job's label), analyze `text` if given."""

        def report(line: str) -> None:
            job.label = line

        started = time.perf_counter()
        try:
            lm = service.models.get(target, report)
        except Cancelled:
            raise
        except LmscopeError as error:
            return UNCHANGED | {"message": message(str(error), False), "picked": model["id"]}
        key = ModelCache.key(target)
        changed = key != model["id"]
        names = {o["value"]: o["label"] for o in options} | {key: lm.card.name}
        result = UNCHANGED | {
            "message": message(f"{lm.card.name} is loaded.", True),
            "url": "?" + urlencode({"model": key}),
            "picked": key,
            "prompt": new_prompt,
        }
        if changed:  # rewriting them would redraw what follows them
            result |= {
                "model": {"id": key, "name": lm.card.name},
                "options": layout.model_options(service.catalog(), names),
                "card": layout.card_view(lm.card),
            }
        if text is None:
            return result
        report(f"Analyzing the prompt with {lm.card.name}")
        try:
            analysis_id, analysis = service.analyze(key, text, report)
        except Cancelled:
            raise
        except LmscopeError as error:  # a long one is offered to run anyway
            return result | {"message": refusal(error, "analyze")}
        seconds = time.perf_counter() - started
        return result | {
            "analysis": {"id": analysis_id, "model": key, "prompt": text},
            "message": message(
                f"Analyzed {len(analysis.tokens):,} tokens with {lm.card.name} in {seconds:.1f} s.",
                True,
            ),
            "url": "?" + urlencode({"model": key, "prompt": text}),
        }
