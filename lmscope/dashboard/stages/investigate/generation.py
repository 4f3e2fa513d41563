"""Generation: greedy, sampling or beam search from the prompt, each step with its alternatives."""

from __future__ import annotations

from dash import Dash, Input, Output, State, dcc, html, no_update

from ....core.errors import LmscopeError
from ....experiments.generation import (
    MAX_BEAMS,
    MAX_NEW_TOKENS,
    Generation,
    GenerationSettings,
    generate,
)
from ... import figures
from .panel import Panel, button, keep, message, number

BODIES = ("inv-gen-body",)
FIGURES = ()

EXPLAIN_GENERATION = (
    "Generating text means predicting a token, appending it, and predicting again. Greedy always "
    "takes the most likely token; sampling draws at random (temperature < 1 sharpens, > 1 "
    "flattens; top-k and top-p keep only the likeliest tokens; a seed repeats a draw); beam search "
    "keeps several candidate continuations and returns the most likely whole sequence."
)


def layout() -> list:
    controls = html.Div(
        [
            dcc.RadioItems(
                id="inv-gen-method",
                options=[
                    {"label": "greedy", "value": "greedy"},
                    {"label": "sampling", "value": "sample"},
                    {"label": "beam search", "value": "beam"},
                ],
                value="greedy",
                inline=True,
            ),
            number("inv-gen-tokens", 20, f"new tokens (1-{MAX_NEW_TOKENS})", step=1),
            number("inv-gen-temperature", 1.0, "temperature", step=0.05),
            number("inv-gen-top-k", 0, "top-k (0 = off)", step=1),
            number("inv-gen-top-p", 1.0, "top-p", step=0.01),
            number("inv-gen-seed", 0, "seed", step=1),
            number("inv-gen-beams", 3, f"beams (1-{MAX_BEAMS})", step=1),
            button("Generate", "inv-gen-run", True),
        ],
        className="row",
    )
    return [
        html.H3("Generation"),
        html.P(EXPLAIN_GENERATION, className="explain"),
        controls,
        html.Div(id="inv-gen-body"),
    ]


def generation_view(result: Generation) -> list:
    """The continuation, then per step the chosen token, its probability and the alternatives."""
    data = result.to_dict()
    sampled = data["settings"]["method"] == "sample"
    header = ["step", "chosen token", "probability", "rank", "top alternatives"]
    if sampled:
        header.insert(3, "sampled with")
    rows = []
    for i, step in enumerate(data["steps"], 1):
        chosen = step["chosen"]
        cells = [
            html.Td(i),
            html.Td(chosen["display"], className="mono"),
            html.Td(figures.percent(chosen["probability"])),
            html.Td(step["rank"] + 1),
            html.Td(
                " · ".join(f"{a['display']} {figures.percent(a['probability'])}"
                           for a in step["alternatives"]),
                className="mono",
            ),
        ]  # fmt: skip
        if sampled:
            cells.insert(3, html.Td(figures.percent(step["sampling_probability"])))
        rows.append(html.Tr(cells))
    seed = f" with seed {data['seed']}" if sampled else ""
    return [
        html.P(
            [
                html.Span(f"{data['settings']['method']}{seed}: ", className="field-label"),
                html.Span(data["prompt"][-200:], className="hint"),
                html.Strong(result.text, id="inv-gen-text", className="continuation"),
            ]
        ),
        html.Table(
            [html.Thead(html.Tr([html.Th(h) for h in header])), html.Tbody(rows)],
            className="table",
            id="inv-gen-steps",
        ),
    ]


def register(app: Dash, panel: Panel) -> None:
    @app.callback(
        Output("inv-gen-body", "children"),
        Output("inv-message", "children", allow_duplicate=True),
        Output("inv-results", "data", allow_duplicate=True),
        Input("inv-gen-run", "n_clicks"),
        State("inv-gen-method", "value"),
        State("inv-gen-tokens", "value"),
        State("inv-gen-temperature", "value"),
        State("inv-gen-top-k", "value"),
        State("inv-gen-top-p", "value"),
        State("inv-gen-seed", "value"),
        State("inv-gen-beams", "value"),
        State("analysis", "data"),
        State("client", "data"),
        running=[(Output("inv-gen-run", "disabled"), True, False)],
        prevent_initial_call=True,
    )
    @panel.current_only
    def run_generation(_clicks, method, tokens, temperature, top_k, top_p, seed, beams, data):
        body = {"method": method, "max_new_tokens": tokens}
        if method == "sample":
            body |= {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
        elif method == "beam":
            body["beams"] = beams
        try:
            lm, prompt = panel.model_and_prompt(data)
            result = generate(lm, prompt, GenerationSettings.from_request(body))
        except LmscopeError as error:
            return no_update, message(str(error)), no_update
        return generation_view(result), "", keep("generation", result.to_dict())
