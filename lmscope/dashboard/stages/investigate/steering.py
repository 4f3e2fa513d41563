"""Steering: add a direction to the residual stream at one layer (from two prompts, or one token's
unembedding) and compare the next token and a greedy continuation without and with it. The layer
and the position follow the page's focus (a clicked layer, head or token) until the user types
their own."""

from __future__ import annotations

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from ....core.errors import LmscopeError
from ....core.tokens import running_text
from ....experiments.defaults import default
from ....experiments.steering import DEPTH, Steering, steer
from ... import figures
from .. import SHOWN, graph
from .panel import Panel, Setting, button, keep, message, number, parse_target
from .reproduce import code_view, steering_code

TAB = "steering"  # its tab in the panel (labelled capitalized)
BODIES = ("inv-steer-body",)
FIGURES = ("inv-steer",)

EXPLAIN_STEERING = (
    "Steering adds a vector to the residual stream entering one layer, at every position (or "
    "from one position on; generated tokens are always steered), times a coefficient. "
    "Activation addition takes the vector from two prompts: the first prompt's mean activation "
    "at that layer minus the second's (e.g. ␣Love minus ␣Hate), in the stream's own units. A "
    "token's unembedding direction is the direction that raises that token's logit, normalized "
    "to length 1, so the coefficient is the length added; compare it with the stream's length, "
    "shown with the result. Coefficient 0 changes nothing."
)
FIELDS = {"inv-steer-layer": "layer", "inv-steer-position": "position"}  # field -> focus key
FOLLOWS = (
    "Layer and position follow the page's focus (the layer or head, and the token, last clicked "
    "above) until you type your own."
)
DEFAULTS = (
    f"With the layer empty the vector enters {DEPTH:.0%} of the way through the model, times "
    f"{default(steer, 'coefficient'):g}: measured on SmolLM2, that moves the prediction visibly "
    "and keeps the text readable (the vector about as long as the stream). At layer 0, or with "
    "coefficients of 1 and more, the Love - Hate vector was 2 to 50 times the stream's length "
    "and the continuation turned into newlines or one token repeated."
)
KINDS = [
    {"label": "two prompts (activation addition)", "value": "prompts"},
    {"label": "one token's unembedding direction", "value": "token"},
]
# What a shared link carries of this tab (dashboard/share.py); the defaults are the fields' own
URL_SETTINGS = (
    Setting("steer", "inv-steer-kind", ("prompts", "token"), "prompts"),
    Setting("sa", "inv-steer-a", str, "Love"),
    Setting("sb", "inv-steer-b", str, "Hate"),
    Setting("stoken", "inv-steer-token", str, "␣love"),
    Setting("slayer", "inv-steer-layer", int, None, follows="layer"),
    Setting("scoef", "inv-steer-coefficient", float, default(steer, "coefficient")),
    Setting("spos", "inv-steer-position", int, None, follows="position"),
)
FIELD = {s.control: s.default for s in URL_SETTINGS}


def text_input(input_id: str, label: str, placeholder: str, value: str = "") -> html.Label:
    return html.Label(
        [f"{label} ", dcc.Input(id=input_id, type="text", value=value, placeholder=placeholder,
                                className="model-custom")],
        className="field-label",
    )  # fmt: skip


def layout() -> list:
    return [
        html.H3("Steering: add a direction to the residual stream"),
        html.P(EXPLAIN_STEERING, className="explain"),
        dcc.Store(id="inv-steer-followed", data={"layer": None, "position": None}),
        dcc.Store(id="inv-steer-own", data={}),
        html.Div(
            [
                dcc.RadioItems(
                    id="inv-steer-kind", options=KINDS, value=FIELD["inv-steer-kind"], inline=True
                ),
                text_input("inv-steer-a", "prompt A", "e.g. Love", FIELD["inv-steer-a"]),
                text_input("inv-steer-b", "minus prompt B", "e.g. Hate", FIELD["inv-steer-b"]),
                text_input("inv-steer-token", "token", "e.g. ␣love", FIELD["inv-steer-token"]),
            ],
            className="row",
        ),
        html.Div(
            [
                number(
                    "inv-steer-layer",
                    FIELD["inv-steer-layer"],
                    "layer",
                    step=1,
                    min=0,
                    placeholder=f"{DEPTH:.0%} in",
                ),
                number(
                    "inv-steer-coefficient",
                    FIELD["inv-steer-coefficient"],
                    "coefficient",
                    step=0.5,
                ),
                number("inv-steer-position", None, "from position (empty = all)", step=1, min=0),
                button("Steer", "inv-steer-run", True),
            ],
            className="row actions",
        ),
        html.P(FOLLOWS, className="hint", id="inv-steer-follows"),
        html.P(DEFAULTS, className="hint", id="inv-steer-defaults"),
        html.Div(id="inv-steer-body"),
        graph("inv-steer", "lmscope-steering"),
    ]


def steering_view(result: Steering) -> list:
    """What was added and how long it is beside the stream, the top token without and with it,
    the KL divergence and both continuations; all model and user text as text."""
    doc = result.to_dict()
    before, after = result.top("before", 1)[0], result.top("after", 1)[0]
    where = "every position" if result.position is None else f"position {result.position} on"
    return [
        *(html.Div(n, className="notice target-notice") for n in result.notices),
        html.P(
            [
                f"Added {doc['coefficient']:g} x {result.vector.description}, entering layer "
                f"{doc['layer']} at {where}: length {doc['added_norm']:.4g} (the stream there is "
                f"{doc['stream_norm']:.4g} long on average on this prompt).",
            ],
            id="inv-steer-what",
            className="hint",
        ),
        html.P(
            [
                "Top token without: ",
                html.Strong(before.display, className="mono", id="inv-steer-top-before"),
                f" {figures.percent(before.probability)}; with the vector: ",
                html.Strong(after.display, className="mono", id="inv-steer-top-after"),
                f" {figures.percent(after.probability)}. KL divergence (without ‖ with): ",
                html.Strong(f"{result.kl:.4f}", id="inv-steer-kl"),
                " nats.",
            ],
            className="prediction",
        ),
        html.P([html.Span("Greedy continuation without: ", className="field-label"),
                html.Span(running_text(result.generation_before.text), className="continuation",
                          id="inv-steer-continuation-before")]),
        html.P([html.Span("with the vector: ", className="field-label"),
                html.Span(running_text(result.generation_after.text), className="continuation",
                          id="inv-steer-continuation-after")]),
    ]  # fmt: skip


def chart(result: Steering):
    """Next-token probabilities without and with the vector (the top 10 of each)."""
    lm = result.lm
    before, after = result.before.softmax(-1), result.after.softmax(-1)
    top_before = [p.id for p in result.top("before")]
    ids = top_before + [p.id for p in result.top("after") if p.id not in top_before]
    rows = [(i, lm.token_display(i), float(before[i]), float(after[i])) for i in ids]
    title = "Next-token probabilities without (before) and with (after) the steering vector"
    return figures.before_after(rows, title)


def whole(value: object) -> object:
    """A number field's value as an int when it is one (the page may send 2.0)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def followed(focus: dict | None, own: dict | None, shown: dict) -> dict:
    """The layer and position the fields take from `focus`, for each field the user has not set
    (`own`): the focused layer when there is one, the focused position or none (every position)."""
    focus, own, update = focus or {}, own or {}, {}
    if not own.get("layer") and isinstance(focus.get("layer"), int):
        update["layer"] = focus["layer"]
    if not own.get("position"):
        update["position"] = focus.get("position")
    return {key: value for key, value in update.items() if value != shown.get(key)}


def register(app: Dash, panel: Panel) -> None:
    @app.callback(
        Output("inv-steer-layer", "value"),
        Output("inv-steer-position", "value"),
        Output("inv-steer-followed", "data"),
        Input("focus", "data"),
        State("inv-steer-own", "data"),
        State("inv-steer-followed", "data"),
        prevent_initial_call=True,
    )
    def follow_focus(focus, own, shown):
        """The fields the user has not typed show the focused layer and position."""
        update = followed(focus, own, shown or {})
        if not update:
            return no_update, no_update, no_update
        return (update.get("layer", no_update), update.get("position", no_update),
                (shown or {}) | update)  # fmt: skip

    @app.callback(
        Output("inv-steer-own", "data"),
        Input("inv-steer-layer", "value"),
        Input("inv-steer-position", "value"),
        State("inv-steer-followed", "data"),
        State("inv-steer-own", "data"),
        prevent_initial_call=True,
    )
    def typed(layer, position, shown, own):
        """A field whose value is not the one the focus put there was typed by the user: it
        stops following the focus."""
        key = FIELDS.get(ctx.triggered_id)
        if key is None:
            return no_update
        value = {"layer": layer, "position": position}[key]
        mine = value != (shown or {}).get(key)
        if bool((own or {}).get(key)) == mine:
            return no_update
        return (own or {}) | {key: mine}

    @app.callback(
        Output("inv-steer-body", "children"),
        Output({"kind": "figure", "name": "inv-steer"}, "figure"),
        Output({"kind": "figure", "name": "inv-steer"}, "style"),
        Output("inv-message", "children", allow_duplicate=True),
        Output("inv-results", "data", allow_duplicate=True),
        Input("inv-steer-run", "n_clicks"),
        State("inv-steer-kind", "value"),
        State("inv-steer-a", "value"),
        State("inv-steer-b", "value"),
        State("inv-steer-token", "value"),
        State("inv-steer-layer", "value"),
        State("inv-steer-coefficient", "value"),
        State("inv-steer-position", "value"),
        State("analysis", "data"),
        State("client", "data"),
        running=[(Output("inv-steer-run", "disabled"), True, False)],
        prevent_initial_call=True,
    )
    @panel.current_only
    def run_steering(_clicks, kind, a, b, token, layer, coefficient, position, data):
        source = {"prompts": [a or "", b or ""]} if kind == "prompts" else {}
        if kind == "token":
            source = {"token": parse_target(token) or ""}
        try:
            lm, prompt = panel.model_and_prompt(data)
            result = steer(lm, prompt, whole(layer), 0.0 if coefficient is None else coefficient,
                           position=whole(position), new_tokens=default(steer, "new_tokens"), **source)  # fmt: skip
        except LmscopeError as error:
            return no_update, no_update, no_update, message(error), no_update
        code = steering_code(lm, data["model"], prompt, whole(layer), coefficient or 0.0, source,
                             whole(position), default(steer, "new_tokens"))  # fmt: skip
        return (
            [*steering_view(result), code_view(code, "inv-steer-body")],
            chart(result),
            SHOWN,
            "",
            keep("steering", result.to_dict()),
        )
