"""Generation: greedy, sampling or beam search from the prompt, each step with its alternatives.

The sampling sliders redraw the next-token distribution as they move, from the stored analysis's
last-position logits (no forward pass) through `GenerationSettings.distribution`, the function
`generate` samples from. After a generation, each generated token is a button: the first click
analyzes prompt + generation in one traced pass, and every stage follows the clicked position
(`focus.position`).
"""

from __future__ import annotations

import secrets

from dash import ALL, Dash, Input, Output, Patch, State, ctx, dcc, html, no_update, set_props

from ....core.analysis import Analysis, analyze_continuation
from ....core.errors import LmscopeError
from ....experiments.generation import (
    MAX_BEAMS,
    MAX_NEW_TOKENS,
    Generation,
    GenerationSettings,
    generate,
)
from ... import figures
from .. import HIDDEN, SHOWN, graph
from .panel import Panel, Setting, button, keep, message, number
from .reproduce import code_view, generation_code

TAB = "generation"  # its tab in the panel (labelled capitalized)
BODIES = ()  # the result view is kept across the analysis of its own generation (see `reset`)
FIGURES = ()
BARS = 15  # tokens drawn in the distribution

EXPLAIN_GENERATION = (
    "Generating text means predicting a token, appending it, and predicting again. Greedy always "
    "takes the most likely token; sampling draws at random (temperature < 1 sharpens, > 1 "
    "flattens; top-k and top-p keep only the likeliest tokens; a seed repeats a draw); beam search "
    "keeps several candidate continuations and returns the most likely whole sequence. Move the "
    "sliders to see the distribution sampling draws the next token from."
)
CLICK_HINT = "Click a generated token to see every stage at its position: "

# What a shared link carries of this tab (dashboard/share.py)
URL_SETTINGS = (
    Setting("gen", "inv-gen-method", ("greedy", "sample", "beam"), "greedy"),
    Setting("new", "inv-gen-tokens", int, 20),
    Setting("temp", "inv-gen-temperature", float, 1.0),
    Setting("topk", "inv-gen-top-k", int, 0),
    Setting("topp", "inv-gen-top-p", float, 1.0),
    Setting("seed", "inv-gen-seed", int, 0),
    Setting("beams", "inv-gen-beams", int, 3),
)
SLIDERS = ("inv-gen-temperature", "inv-gen-top-k", "inv-gen-top-p")


def _slider(slider_id: str, label: str, low: float, high: float, step: float, marks: dict):
    return html.Div(
        [
            html.Label(label, htmlFor=slider_id, className="field-label"),
            dcc.Slider(
                id=slider_id,
                min=low,
                max=high,
                step=step,
                value=_default(slider_id),
                marks=marks,
                updatemode="mouseup",  # `value` (URL, Generate) on release; `drag_value` live
                tooltip={"placement": "bottom", "always_visible": False},
            ),
        ],
        className="gen-slider",
        style={"minWidth": "14rem", "flex": "1"},
    )


def _default(control: str) -> object:
    return next(s.default for s in URL_SETTINGS if s.control == control)


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
            number("inv-gen-seed", 0, "seed", step=1),
            number("inv-gen-beams", 3, f"beams (1-{MAX_BEAMS})", step=1),
            button("Generate", "inv-gen-run", True),
        ],
        className="row",
    )
    sliders = html.Div(
        [
            _slider(
                "inv-gen-temperature",
                "temperature",
                0.05,
                2.0,
                0.05,
                {0.05: "0.05", 0.5: "0.5", 1: "1", 1.5: "1.5", 2: "2"},
            ),
            _slider(
                "inv-gen-top-k",
                "top-k (0 = off)",
                0,
                100,
                1,
                {0: "off", 10: "10", 50: "50", 100: "100"},
            ),
            _slider(
                "inv-gen-top-p",
                "top-p (1 = off)",
                0.05,
                1.0,
                0.01,
                {0.05: "0.05", 0.5: "0.5", 0.9: "0.9", 1: "off"},
            ),
        ],
        className="row",
        id="inv-gen-sliders",
    )
    return [
        html.H3("Generation"),
        html.P(EXPLAIN_GENERATION, className="explain"),
        controls,
        sliders,
        html.P(id="inv-gen-dist-note", className="hint"),
        graph("inv-gen-distribution", "lmscope-next-token-distribution"),
        dcc.Store(id="inv-gen-store"),
        dcc.Store(id="inv-gen-analysis"),
        dcc.Store(id="inv-gen-opened"),  # a clicked generated token: the stages come into view
        dcc.Store(id="inv-gen-scrolled"),
        html.Div(id="inv-gen-body"),
    ]


def on_analysis(data: dict | None, kept: dict | None, tab: str | None) -> tuple:
    """What a new analysis changes here: the result view is cleared (unless this is the analysis
    of that generation), and the distribution is redrawn if the tab is open."""
    body = no_update if data and kept and data.get("generation") == kept.get("key") else []
    return body, (data if tab == TAB else no_update)


def settings_from(method, tokens, temperature, top_k, top_p, seed, beams) -> GenerationSettings:
    """The controls as settings (a `RequestError` says which one is wrong)."""
    body = {"method": method, "max_new_tokens": tokens}
    if method == "sample":
        body |= {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
    elif method == "beam":
        body["beams"] = beams
    return GenerationSettings.from_request(body)


def distribution_bars(analysis: Analysis, settings: GenerationSettings, n: int = BARS) -> dict:
    """The n likeliest next tokens: the model's probability and the one sampling draws with
    (`settings.distribution` of the analysis's last logits), and how many tokens can be drawn."""
    logits = analysis.logits
    sampled = settings.distribution(logits)
    top = logits.topk(min(n, logits.shape[-1])).indices
    return {
        "ids": top.tolist(),
        "texts": [analysis.lm.token_display(i) for i in top.tolist()],
        "model": logits.softmax(-1)[top].tolist(),
        "sampled": sampled[top].tolist(),
        "allowed": int((sampled > 0).sum()),
    }


def distribution_figure(bars: dict, sampling: bool) -> dict:
    """Grouped horizontal bars: the model's own probabilities, and (sampling) what is drawn from."""
    labels = [figures.plot_text(f"{r}. {t}") for r, t in enumerate(bars["texts"], 1)]
    traces = [("model (temperature 1)", bars["model"], "#b8c4d0")]
    if sampling:
        traces.append(("sampling draws from", bars["sampled"], "#2f6fad"))
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "name": name,
            "x": [round(v, 6) for v in values],
            "y": labels,
            "customdata": bars["ids"],
            "marker": {"color": colour},
            "hovertemplate": "%{y} (id %{customdata})<br>%{x:.4f}<extra>%{fullData.name}</extra>",
        }
        for name, values, colour in traces
    ]
    top = max(max(bars["model"]), max(bars["sampled"]) if sampling else 0)
    return {
        "data": data,
        "layout": {
            "barmode": "group",
            "height": 60 + 26 * len(labels),
            "margin": {"l": 10, "r": 20, "t": 30, "b": 30},
            "title": {"text": "Next-token distribution", "font": {"size": 14}},
            "yaxis": {"autorange": "reversed", "automargin": True},
            "xaxis": {"title": {"text": "probability"}, "range": [0, min(1.0, top * 1.15) or 1]},
            "legend": {"orientation": "h", "y": -0.12},
            "transition": {"duration": 0},
        },
    }


def distribution_note(bars: dict, settings: GenerationSettings, vocab: int) -> str:
    best = bars["texts"][0]
    if settings.method == "greedy":
        return f"Greedy takes the most likely token, {best}, every time: the sliders do not apply."
    if settings.method == "beam":
        return (
            "Beam search keeps the likeliest continuations by their whole-sequence probability: "
            "the sliders do not apply."
        )
    return (
        f"Sampling can draw {bars['allowed']:,} of {vocab:,} tokens; {best} with probability "
        f"{figures.percent(bars['sampled'][0])} (the model alone gives it "
        f"{figures.percent(bars['model'][0])})."
    )


def generation_view(result: Generation) -> list:
    """The continuation (each token a button), then per step the chosen token and alternatives."""
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
    buttons = [
        html.Button(
            step["chosen"]["display"],
            id={"kind": "gen-token", "index": i},
            className="chip chip-plain gen-token",
            title=f"generated token {i + 1}, id {step['chosen']['id']}: see every stage here",
        )
        for i, step in enumerate(data["steps"])
    ]
    return [
        html.P(
            [
                html.Span(f"{data['settings']['method']}{seed}: ", className="field-label"),
                html.Span(data["prompt"][-200:], className="hint"),
                html.Strong(result.text, id="inv-gen-text", className="continuation"),
            ]
        ),
        html.Div(
            [html.Span(CLICK_HINT, className="hint"), *buttons],
            className="chip-row",
            id="inv-gen-tokens-row",
        ),
        html.Table(
            [html.Thead(html.Tr([html.Th(h) for h in header])), html.Tbody(rows)],
            className="table",
            id="inv-gen-steps",
        ),
    ]


def opened_line(analysis: Analysis, kept: dict, index: int) -> html.Div:
    """The status line once prompt + generation is shown, following generated token `index`."""
    new = len(kept["new_ids"])
    position = len(analysis.tokens) - new + index
    return html.Div(
        [
            f"Analyzed {len(analysis.tokens):,} tokens with {analysis.lm.card.name}: the prompt's "
            f"{len(analysis.tokens) - new:,} and {new} generated. Every stage follows generated "
            f"token {index + 1} (position {position}) ",
            html.Span(analysis.tokens[position].display, className="chip-inline"),
            ".",
        ],
        className="message ok",
        id="gen-opened-message",
    )


def register(app: Dash, panel: Panel) -> None:
    @app.callback(
        Output({"kind": "figure", "name": "inv-gen-distribution"}, "figure"),
        Output({"kind": "figure", "name": "inv-gen-distribution"}, "style"),
        Output("inv-gen-dist-note", "children"),
        *(Output(s, "disabled") for s in SLIDERS),
        Output("inv-gen-seed", "disabled"),
        Output("inv-gen-beams", "disabled"),
        Input("inv-gen-analysis", "data"),
        Input("inv-tabs", "value"),
        Input("inv-gen-method", "value"),
        *(Input(s, "drag_value") for s in SLIDERS),
        *(Input(s, "value") for s in SLIDERS),
        State("analysis", "data"),
    )
    def redraw(_shown, tab, method, t_drag, k_drag, p_drag, t, k, p, data):
        """Live, as a slider moves: the warped distribution of the stored last-position logits
        (drawn only while the tab is open: `inv-gen-analysis` says when a new analysis came)."""
        if tab != TAB:
            return (no_update,) * 8
        disabled = (method != "sample",) * 4 + (method != "beam",)
        analysis = panel.service.stored(data)
        if analysis is None:
            return (no_update, HIDDEN, "", *disabled)
        # The slider being dragged reports `drag_value`; the others (and a link) `value`.
        moving = ctx.triggered_prop_ids
        drags = (t_drag, k_drag, p_drag)
        values = [d if f"{s}.drag_value" in moving and d is not None else v
                  for s, d, v in zip(SLIDERS, drags, (t, k, p), strict=True)]  # fmt: skip
        try:
            settings = settings_from(method, 1, *values, None, 1)
        except LmscopeError as error:
            return (no_update, no_update, str(error), *disabled)
        bars = distribution_bars(analysis, settings)
        note = distribution_note(bars, settings, analysis.logits.shape[-1])
        return (distribution_figure(bars, method == "sample"), SHOWN, note, *disabled)

    @app.callback(
        Output("inv-gen-body", "children"),
        Output("inv-message", "children", allow_duplicate=True),
        Output("inv-results", "data", allow_duplicate=True),
        Output("inv-gen-store", "data"),
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
        try:
            lm, prompt = panel.model_and_prompt(data)
            settings = settings_from(method, tokens, temperature, top_k, top_p, seed, beams)
            result = generate(lm, prompt, settings)
        except LmscopeError as error:
            return no_update, message(error), no_update, no_update
        kept = {
            "key": secrets.token_hex(6),
            "model": data["model"],
            "prompt": prompt,
            "new_ids": result.ids,
            "prompt_tokens": len(result.tokens),
        }
        code = generation_code(data["model"], prompt, settings, result.seed)
        view = [*generation_view(result), code_view(code, "inv-gen-body")]
        return view, "", keep("generation", result.to_dict()), kept

    app.clientside_callback(  # in the browser: the redrawn stages, from the tokens on
        """function (opened) {
            const stages = document.getElementById("stage-1");
            if (!opened || !stages) return window.dash_clientside.no_update;
            stages.scrollIntoView({block: "start"});
            return opened;
        }""",
        Output("inv-gen-scrolled", "data"),
        Input("inv-gen-opened", "data"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output("analysis", "data", allow_duplicate=True),
        Output("focus", "data", allow_duplicate=True),
        Output("inv-message", "children", allow_duplicate=True),
        Input({"kind": "gen-token", "index": ALL}, "n_clicks"),
        State("inv-gen-store", "data"),
        State("analysis", "data"),
        prevent_initial_call=True,
    )
    def open_token(clicks, kept, data):
        """Analyze prompt + generation once (one pass), then follow the clicked token."""
        trigger = ctx.triggered_id
        if not isinstance(trigger, dict) or not any(clicks) or not kept:
            return no_update, no_update, no_update
        index, focus = trigger["index"], Patch()
        shown = panel.service.stored(data)
        if not (data and data.get("generation") == kept["key"] and shown):
            try:
                lm = panel.service.model(kept["model"])
                shown = analyze_continuation(lm, kept["prompt"], kept["new_ids"])
            except LmscopeError as error:
                return no_update, no_update, message(error)
            key = panel.service.store.put(shown)
            data = {"id": key, "model": kept["model"], "prompt": shown.prompt,
                    "generation": kept["key"]}  # fmt: skip
        else:
            data = no_update
        focus["position"] = len(shown.tokens) - len(kept["new_ids"]) + index
        # The page now shows prompt + generation: the prompt box and the status say so, and the
        # stages it redrew come into view (`inv-gen-opened`).
        set_props("prompt", {"value": shown.prompt})
        set_props("message", {"children": opened_line(shown, kept, index)})
        set_props("inv-gen-opened", {"data": {"key": kept["key"], "index": index}})
        return data, focus, ""
