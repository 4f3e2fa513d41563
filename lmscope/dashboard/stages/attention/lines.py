"""The line view (BertViz's head view): hover a token on the left and lines run to the tokens it
reads on the right, in every shown head of one layer at once, a colour per head.

The page gets the window's tokens once per analysis or focus (`VIEWS`: at most `LINE_WINDOW`
tokens up to the followed one, token 0 pinned), then, for each hovered token, one row per shown
head with only the weights it draws (`register`: `core.flow.head_lines`); assets/lines.js draws
them as SVG, text as text."""

from __future__ import annotations

import json

from dash import Dash, Input, Output, State, dcc, html, no_update

from ....core.analysis import Analysis
from ....core.flow import LINE_FLOOR, LINE_WINDOW, head_lines, line_window
from ....service import Service
from .. import Drawing, Views
from ..output import focused_position

HINT = (
    f"Left: each token as it reads; right: the tokens it can read. Hover a token on the left "
    f"(or Tab to it) and a line runs to every token it reads with a weight of at least "
    f"{LINE_FLOOR:g}, one colour per head, thicker for more. Click a head's button to hide or "
    f"show it. Long prompts show the {LINE_WINDOW} tokens up to the followed one, with token 0 "
    "(where many heads park their attention) pinned on top; weight on tokens not shown is "
    "counted below the lines."
)


def layout() -> html.Div:
    return html.Div(
        [
            html.H3("Lines: what a token reads, in several heads at once"),
            html.P(HINT, className="hint"),
            html.Div(
                html.P("Press Analyze to draw the lines.", className="empty"), id="lines-frame"
            ),
            dcc.Store(id="lines-ask"),
            html.Div(id="lines-answer", hidden=True),
        ],
        id="attn-lines",
        className="lines-view",
        role="region",
        **{"aria-label": "line view of attention"},
    )


def focused_layer(analysis: Analysis, focus: dict | None) -> int | None:
    """The layer the page looks at (`focus.layer`, else the open head's), if this model has it."""
    focus = focus or {}
    layer = focus.get("layer")
    if not isinstance(layer, int) or isinstance(layer, bool):
        head = focus.get("head")
        layer = head[0] if isinstance(head, list | tuple) and head else None
    if isinstance(layer, int) and not isinstance(layer, bool) and 0 <= layer < len(analysis.keys):
        return layer
    return None


def frame(drawing: Drawing) -> tuple:
    """The view's tokens and heads for assets/lines.js (`VIEWS`); no weights."""
    analysis, data, focus = drawing.analysis, drawing.data, drawing.focus
    if analysis is None:
        return (html.P("Press Analyze to draw the lines.", className="empty"),)
    position = focused_position(analysis, focus)
    doc = {
        "analysis": data["id"],
        "layers": len(analysis.keys),
        "heads": analysis.heads_per_layer,
        "layer": focused_layer(analysis, focus),
        "position": position,
        "window": [
            [i, analysis.tokens[i].display] for i in line_window(len(analysis.tokens), position)
        ],
    }
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return (html.Div(id="lines-holder", **{"data-lines-frame": text}),)


VIEWS = Views((Output("lines-frame", "children"),), frame, follows_focus=True)


def _index(value: object, size: int) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < size
    return value if ok else None


def read_ask(ask: object, analysis: Analysis, key: str) -> tuple[int, int, list[int], int] | None:
    """(layer, position, heads, end) from the page's request, or None where it does not fit
    this analysis (a request from an older page, or a crafted one)."""
    if not isinstance(ask, dict) or ask.get("analysis") != key:
        return None
    count = len(analysis.tokens)
    layer = _index(ask.get("layer"), len(analysis.keys))
    position = _index(ask.get("position"), count)
    end = _index(ask.get("end"), count)
    heads = ask.get("heads")
    if layer is None or position is None or end is None or not isinstance(heads, list):
        return None
    picked = [_index(h, analysis.heads_per_layer) for h in heads]
    if None in picked or len(set(picked)) != len(picked):
        return None
    if position not in line_window(count, end):
        return None
    return layer, position, picked, end


def register(app: Dash, service: Service) -> None:
    @app.callback(
        Output("lines-answer", "children"),
        Input("lines-ask", "data"),
        State("analysis", "data"),
        prevent_initial_call=True,
    )
    def answer(ask, data):
        """The hovered token's row in each shown head: only the weights the view draws."""
        analysis = service.stored(data)
        asked = None if analysis is None else read_ask(ask, analysis, data["id"])
        if asked is None:
            return no_update
        layer, position, heads, end = asked
        shown = line_window(len(analysis.tokens), end)
        lines = head_lines(analysis, layer, position, heads, shown)
        doc = {
            "analysis": data["id"],
            "n": _index(ask.get("n"), 2**53),  # echoed: the page draws only its latest request
            "layer": layer,
            "position": position,
            "lines": [line.to_dict() for line in lines],
        }
        return html.Div(**{"data-lines": json.dumps(doc, separators=(",", ":"))})
