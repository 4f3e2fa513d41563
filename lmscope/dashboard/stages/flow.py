"""The pass on one screen: the followed token's way through the model, with this prompt's own
numbers (`core.flow`), above the five stages. Each part is a button that brings the stage
explaining it into view; the diagram is ONE component, drawn by assets/flow.js as DOM text."""

from __future__ import annotations

import json

from dash import Dash, Input, Output, State, html, no_update

from ...core.analysis import Analysis
from ...core.flow import flow
from ...service import Service
from . import Drawing, Views, position_input, section
from .attention.grid import focus_position
from .output import focused_position
from .tokens import FOCUSED

TAIL = 6  # the tokens shown up to the followed one

EXPLAIN = (
    "One token's way through the model: its [[embedding]] starts the [[residual stream]], each "
    "[[layer]]'s attention and [[MLP]] add a vector to it, and the read-out turns it into "
    "[[logits|logit]] and probabilities. Bars are lengths of this prompt's own vectors; the "
    "words are the [[logit lens]]'s guess after each layer. Click a part for its stage."
)


def layout() -> html.Section:
    return section(
        0,
        "The pass on one screen",
        EXPLAIN,
        html.Div(
            [
                html.Label("Follow token ", htmlFor="flow-position", className="field-label"),
                position_input("flow-position"),
                html.Span(id="flow-position-note", className="hint"),
            ],
            className="row",
        ),
        html.Div(html.P("Press Analyze to see the pass.", className="empty"), id="flow-body"),
        badge="The whole pass",
    )


def document(analysis: Analysis, position: int, key: str) -> dict:
    """What assets/flow.js draws: `core.flow`'s numbers, the tokens up to the followed one."""
    doc = flow(analysis, position).to_dict()
    start = max(0, position + 1 - TAIL)
    doc["tail"] = [[t.index, t.display] for t in analysis.tokens[start : position + 1]]
    doc["name"] = analysis.lm.card.name
    doc["analysis"] = key
    doc["followed_colour"] = FOCUSED
    return doc


def draw(drawing: Drawing) -> tuple:
    """The diagram for the followed token, and the position box (`VIEWS`)."""
    analysis, data, focus = drawing.analysis, drawing.data, drawing.focus
    if analysis is None:
        return html.P("Press Analyze to see the pass.", className="empty"), None, None, ""
    position = focused_position(analysis, focus)
    doc = json.dumps(document(analysis, position, data["id"]), ensure_ascii=False,
                     separators=(",", ":"))  # fmt: skip
    count = len(analysis.tokens)
    note = f"of {count:,} (0 to {count - 1:,}; every stage follows it)"
    body = html.Div(
        id="flow-diagram", className="flow", **{"data-flow": doc, "data-analysis": data["id"]}
    )
    # the box is written only when it changes: a write sets off its own callback (`register`)
    values = drawing.values
    last = count - 1 if values.get("flow-position.max") != count - 1 else no_update
    value = position if values.get("flow-position.value") != position else no_update
    return body, last, value, note


VIEWS = Views(
    (
        Output("flow-body", "children"),
        Output("flow-position", "max"),
        Output("flow-position", "value"),
        Output("flow-position-note", "children"),
    ),
    draw,
    follows_focus=True,
    reads=(State("flow-position", "max"), State("flow-position", "value")),
)


def register(app: Dash, service: Service) -> None:
    @app.callback(
        Output("focus", "data", allow_duplicate=True),
        Input("flow-position", "value"),
        State("focus", "data"),
        State("analysis", "data"),
        prevent_initial_call=True,
    )
    def follow(value, focus, data):
        """A position typed in the box becomes the one every stage follows (the box is also
        set when the focus moves: then it already names the followed token)."""
        analysis = service.stored(data)
        if analysis is None or not isinstance(value, int) or isinstance(value, bool):
            return no_update
        if not 0 <= value < len(analysis.tokens) or value == focused_position(analysis, focus):
            return no_update
        return focus_position(value)
