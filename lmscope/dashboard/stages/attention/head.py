"""One head: its pattern beside the grid, opened by whoever sets `focus.head` (a grid cell, a
thumbnail, the layer view, a shared link). Past `OVERVIEW` tokens it is drawn max-pooled; zooming
in redraws the window at full resolution. A click on a row makes that query token the focus."""

from __future__ import annotations

import math

from dash import Dash, Input, Output, State, html, no_update

from ....core.analysis import OVERVIEW, Analysis
from ....core.heads import LABELS, head_name
from ....core.profile import known_profile
from ....service import Service
from ...figures import percent
from .. import HIDDEN, SHOWN, graph
from .grid import describe, focus_position
from .plots import attention_heatmap

PROMPT = "Click a head in the grid (or Tab to the grid and use the arrow keys, then Enter)."
HEATMAP = {"kind": "figure", "name": "head-heatmap"}


# A zoomed window is sent exact (float32): at most ZOOM x ZOOM weights, about 270 KB compressed
ZOOM = 360


def layout() -> html.Div:
    return html.Div(
        [
            html.H3("One head"),
            html.P(PROMPT, id="head-detail"),
            graph("head-heatmap", "lmscope-attention-head"),
            html.P(id="head-zoom-note", className="hint", hidden=True),
        ],
        id="head-view",
        className="head-view",
        role="region",
        **{"aria-label": "the open head's attention pattern"},
    )


def focused_head(analysis: Analysis, focus: dict | None) -> tuple[int, int] | None:
    """The head `focus` names, if this model has it."""
    head = (focus or {}).get("head")
    if not isinstance(head, list | tuple) or len(head) != 2:
        return None
    layer, index = head
    if not all(isinstance(x, int) for x in head):
        return None
    if 0 <= layer < len(analysis.keys) and 0 <= index < analysis.heads_per_layer:
        return layer, index
    return None


def window_of(relayout: dict | None, tokens: int) -> tuple[int, int, int, int] | bool | None:
    """The rows and keys a zoom shows, `(r0, r1, k0, k1)`; False for "back to the whole head";
    None when the event is no zoom (or the window is still too large for full resolution)."""
    if not relayout:
        return None
    if relayout.get("xaxis.autorange") or relayout.get("yaxis.autorange"):
        return False
    try:
        x0, x1 = sorted((relayout["xaxis.range[0]"], relayout["xaxis.range[1]"]))
        y0, y1 = sorted((relayout["yaxis.range[0]"], relayout["yaxis.range[1]"]))
    except (KeyError, TypeError):
        return None

    def span(a: float, b: float) -> tuple[int, int]:
        return max(0, math.floor(a + 0.5)), min(tokens, math.ceil(b + 0.5))

    (k0, k1), (r0, r1) = span(x0, x1), span(y0, y1)
    if k1 <= k0 or r1 <= r0 or r1 - r0 > ZOOM or k1 - k0 > ZOOM:
        return None
    return r0, r1, k0, k1


OUTPUTS = (
    Output(HEATMAP, "figure"),
    Output(HEATMAP, "style"),
    Output("head-detail", "children"),
    Output("head-zoom-note", "children"),
    Output("head-zoom-note", "hidden"),
    Output("head-shown", "data"),
)


def draw(analysis: Analysis | None, data: dict | None, focus: dict | None, shown) -> tuple:
    """The open head's pattern and what it does (`OUTPUTS`); `shown`: the head drawn now."""
    if analysis is None:
        return no_update, HIDDEN, PROMPT, "", True, None
    chosen = focused_head(analysis, focus)
    if chosen is None:
        return no_update, HIDDEN, PROMPT, "", True, None
    key = [data["id"], *chosen]
    if shown == key:  # focus changed elsewhere (position, target): the head stays as drawn
        return (no_update,) * 6
    layer, head = chosen
    report = analysis.heads
    detail = [
        html.Strong(head_name(layer, head)),
        f": on this input {describe(report, layer, head)}. Hover a cell for the tokens and "
        "the exact weight; click a row to follow that query token in the step and token "
        "views below.",
    ]
    profile = known_profile(analysis.lm)  # measured for the categories table, not waited for
    if profile is not None:
        detail.append(f" General role (profile): {LABELS[profile.categories[layer][head]]}.")
    count = len(analysis.tokens)
    note = (
        f"{count:,} tokens: the overview shows in each cell the largest weight of a tile of "
        f"tokens. Drag a box over the part you want (at most {ZOOM} tokens a side) to see "
        "every token in it (the title says which you are looking at); double-click to go back."
    )
    figure = attention_heatmap(analysis, layer, head)
    return figure, SHOWN, detail, note, count <= OVERVIEW, key


def register(app: Dash, service: Service) -> None:
    @app.callback(
        Output(HEATMAP, "figure", allow_duplicate=True),
        Input(HEATMAP, "relayoutData"),
        State("head-shown", "data"),
        State("analysis", "data"),
        prevent_initial_call=True,
    )
    def zoom(relayout, shown, data):
        """Past `OVERVIEW` tokens: a zoom redraws its window at full resolution."""
        analysis = service.stored(data)
        if analysis is None or not shown or shown[0] != data["id"]:
            return no_update
        count = len(analysis.tokens)
        window = window_of(relayout, count)
        if count <= OVERVIEW or window is None:
            return no_update
        layer, head = shown[1:]
        return attention_heatmap(analysis, layer, head, window=window or None)

    @app.callback(
        Output("focus", "data", allow_duplicate=True),
        Input(HEATMAP, "clickData"),
        prevent_initial_call=True,
    )
    def follow_row(click):
        """A click on a cell makes its query (row) token the one the views follow."""
        try:
            row = int(click["points"][0]["y"])
        except (TypeError, KeyError, IndexError, ValueError):
            return no_update
        return focus_position(row)

    app.clientside_callback(
        """function (_detail, shown) {
            const view = document.getElementById("head-view");
            if (!shown || !view) return window.dash_clientside.no_update;
            const box = view.getBoundingClientRect();
            if (box.top < 0 || box.top > window.innerHeight * 0.6) {
                view.scrollIntoView({block: "start"});
            }
            return shown.join("/");
        }""",
        Output("head-scrolled", "data"),
        Input("head-detail", "children"),
        State("head-shown", "data"),
    )


HOW_IT_READS = {
    "previous_token": "it reads the token just before (a stripe just below the diagonal)",
    "self": "each token reads itself (the diagonal)",
    "diffuse": "its attention is spread over many earlier tokens",
    "duplicate_token": "it reads earlier copies of the current token",
    "induction": "it reads the token after the earlier copy of the current token",
}


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def tour_text(analysis: Analysis, layer: int, head: int) -> str:
    """What the tour says of the head it opens: its role and score on this prompt, its share on
    the first token, and where the last token reads most, in this prompt's numbers."""
    report = analysis.heads
    category = report.categories[layer][head]
    score, sink = report.strength(layer, head) or 0.0, report.sink(layer, head) or 0.0
    last = analysis.pattern(layer, head, slice(-1, None))[0]
    key = int(last.argmax())
    tokens = analysis.tokens
    return (
        f"This is {head_name(layer, head)}, {article(LABELS[category])} {LABELS[category]} head "
        f"on this prompt: "
        f"{HOW_IT_READS[category]}. {percent(score)} of the attention it does not park on the "
        f"first token goes there ({percent(sink)} sits on the first token). In the bottom row, "
        f"the last token {tokens[-1].display} gives {percent(float(last[key]))} to "
        f"{tokens[key].display}. Each row of the pattern is a token reading; each column, "
        "a token it reads from."
    )
