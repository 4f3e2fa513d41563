"""Token-centric attention: where the followed query token reads from, in the open head or in
several heads overlaid, as shaded token chips (BertViz's idea, drawn by assets/chips.js as text).
Clicking a chip follows that token instead (assets/roving.js sets `attn-pick`)."""

from __future__ import annotations

from dash import Dash, Input, Output, State, dcc, html, no_update

from ....core.analysis import Analysis
from ....core.heads import head_name
from ....service import Service
from ...figures import mix
from ..tokens import chips
from .grid import focus_position
from .head import focused_head
from .steps import followed, token

SHADE = "#2f6fad"
OVERLAYS = [
    {"label": "the open head", "value": "head"},
    {"label": "its key/value group", "value": "group"},
    {"label": "every head of its layer", "value": "layer"},
]


def layout() -> html.Div:
    return html.Div(
        [
            html.H3("Where one token reads from"),
            html.Div(
                [
                    html.Span("Shade by ", className="field-label"),
                    dcc.RadioItems(id="attn-overlay", options=OVERLAYS, value="head", inline=True),
                ],
                className="row",
            ),
            html.Div(html.P("Open a head to see this.", className="empty"), id="attn-tokens"),
            dcc.Store(id="attn-pick"),
        ],
        id="attn-token-view",
        className="token-view",
    )


def overlay_heads(layer_heads: int, head: int, kv_heads: int, overlay: str) -> list[int]:
    """The heads whose attention is shown together."""
    if overlay == "layer":
        return list(range(layer_heads))
    if overlay == "group":
        size = layer_heads // kv_heads
        return list(range(head // size * size, head // size * size + size))
    return [head]


CHOICES = Output("attn-overlay", "options")
OUTPUT = Output("attn-tokens", "children")


def choices(analysis: Analysis | None) -> list[dict]:
    """The key/value group choice only where heads share keys (grouped-query attention)."""
    shared = analysis is not None and analysis.keys[0].key.shape[1] < analysis.heads_per_layer
    return [o | {"disabled": o["value"] == "group" and not shared} for o in OVERLAYS]


def draw(analysis: Analysis | None, focus: dict | None, overlay: str | None):
    """Where the followed token reads from, in the open head or the overlaid heads (`OUTPUT`)."""
    if analysis is None:
        return html.P("Press Analyze, then open a head.", className="empty")
    chosen = focused_head(analysis, focus)
    if chosen is None:
        return html.P("Open a head to see this.", className="empty")
    layer, head = chosen
    position = followed(analysis, focus)
    kv = analysis.keys[layer].key.shape[1]
    heads = overlay_heads(analysis.heads_per_layer, head, kv, overlay)
    rows = analysis.keys[layer].rows(position, position + 1, heads=heads)[0, :, 0].cpu()  # (h, T)
    shade = rows.amax(0)
    shown = analysis.tokens[: position + 1]
    names = [head_name(layer, h) for h in heads]
    notes = [
        " · " + ", ".join(f"{n} {float(w):.3f}" for n, w in zip(names, rows[:, j], strict=True))
        for j in range(position + 1)
    ]
    styles = [mix(SHADE, 0.7 * float(w) ** 0.5) for w in shade[: position + 1]]  # ink stays legible
    top = shade[: position + 1].topk(min(5, position + 1)).indices.tolist()
    many = len(heads) > 1
    summary = [
        "Token ",
        token(analysis, position),
        f" (position {position}) reads most from: ",
    ]
    for rank, j in enumerate(top):
        summary += [", " if rank else "", token(analysis, j), f" {float(shade[j]):.2f}"]
    what = f"the strongest of {len(heads)} heads ({', '.join(names)})" if many else names[0]
    return [
        html.P(summary, className="reads-most"),
        html.P(
            f"Shade: the weight with which this token reads each earlier token in {what}; "
            "hover a token for every head's weight, click one to follow it instead. Later "
            "tokens cannot be read (causal mask) and are left out.",
            className="hint",
        ),
        chips(shown, "chip-plain", notes=notes, styles=styles, id="attn-token-chips"),
    ]


def register(app: Dash, service: Service) -> None:
    @app.callback(
        Output("attn-tokens", "children", allow_duplicate=True),
        Input("attn-overlay", "value"),
        State("focus", "data"),
        State("analysis", "data"),
        prevent_initial_call=True,
    )
    def overlaid(overlay, focus, data):
        return draw(service.stored(data), focus, overlay)

    @app.callback(
        Output("focus", "data", allow_duplicate=True),
        Input("attn-pick", "data"),
        prevent_initial_call=True,
    )
    def pick(position):
        if not isinstance(position, int):
            return no_update
        return focus_position(position)
