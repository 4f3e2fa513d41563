"""The Investigation panel: intervene (ablate heads), attribute, generate, and compare models.

Every result comes from `lmscope.experiments` on the analyzed prompt; this module only reads the
page's controls, calls the library, and draws what it returns. Results (small JSON) are kept in
the browser for the "Download results" button; tensors stay on the server.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable

from dash import ALL, Dash, Input, Output, Patch, State, ctx, dcc, html, no_update

from ...api.service import Service
from ...core.errors import LmscopeError, RequestError
from ...core.heads import LABELS, head_name
from ...core.model import LoadedModel
from ...core.tokens import display
from ...experiments.ablation import MODES, ablate, ablation_scan
from ...experiments.attribution import direct_logit_attribution, token_attribution
from ...experiments.comparison import compare
from ...experiments.generation import (
    MAX_BEAMS,
    MAX_NEW_TOKENS,
    Generation,
    GenerationSettings,
    generate,
)
from ...experiments.inputs import check_heads, parse_heads
from .. import figures
from . import HIDDEN, SHOWN, graph, section, stored
from .tokens import chips

NUMBER = 6
ABLATION_TOKENS = 20  # greedy continuation shown before and after an ablation
COMPARE_TOP = 5
TABS_KEPT = 1000  # open tabs whose current analysis the server remembers

EXPLAIN = (
    "The stages above show what the model computes; here you change it and see what happens. "
    "All experiments use the prompt analyzed above and follow one target token (the top "
    "prediction unless you pick another). Nothing here changes the model for anyone else: every "
    "intervention applies to your request only."
)
EXPLAIN_ABLATION = (
    "Ablation removes heads: their output is replaced by zeros (zero) or by their average over "
    "this prompt (mean, which removes only what depends on the input). If the prediction changes, "
    "the heads mattered. KL divergence measures how far the whole next-token distribution moved "
    "(0 = not at all)."
)
EXPLAIN_SCAN = (
    "The scan removes each head alone, one at a time, and records how the target's "
    "log-probability changes. Red cells: the head helped the target (removing it hurt); blue: it "
    "worked against it. Click a cell to add that head to the ablation set."
)
DLA_METHOD = (
    "Method: each head's and each MLP's output at the last position is read through the final "
    "normalization with its scale frozen at its value on the full residual stream and dotted with "
    "the target's unembedding, so the parts add up to the target's logit exactly."
)
EXPLAIN_DLA = (
    "Direct logit attribution splits the target's logit (its score) into what each head and "
    "each MLP wrote directly into the residual stream. It misses indirect effects (a head that "
    "helps a later head), which ablation catches."
)
EXPLAIN_TOKENS = (
    "Token attribution asks which prompt tokens pushed the model toward the target. Integrated "
    "gradients fades the prompt's token embeddings in from zero and adds up the gradients on the "
    "way; its scores add up to the change in the target's log-probability (the completeness check "
    "below). Gradient x input is the quick one-step estimate. Blue pushed toward the target, red "
    "away; hover a token for the exact value."
)
EXPLAIN_GENERATION = (
    "Generating text means predicting a token, appending it, and predicting again. Greedy always "
    "takes the most likely token; sampling draws at random (temperature < 1 sharpens, > 1 "
    "flattens; top-k and top-p keep only the likeliest tokens; a seed repeats a draw); beam search "
    "keeps several candidate continuations and returns the most likely whole sequence."
)
EXPLAIN_COMPARE = (
    "Run the same prompt through a second model: what each predicts, and which kinds of heads "
    "each has at each depth (0 = first layer, 1 = last), so models of different depth line up."
)
NO_ANALYSIS = "Press Analyze first: the experiments work on the analyzed prompt."


def _message(text: str) -> html.Div:
    return html.Div(text, className="message error")


def _target(text: str | None) -> int | str | None:
    """The target field: empty = the top prediction, digits = a token id, else the token's text
    (␣ may stand for a space)."""
    if not text or not text.strip():
        return None
    if text.strip().isdigit():
        return int(text.strip())
    return text.replace("␣", " ")


def _button(label: str, button_id: str, primary: bool = False) -> html.Button:
    return html.Button(
        label, id=button_id, className=f"button {'primary' if primary else 'secondary'}"
    )


def _number(input_id: str, value: float, label: str, **props) -> html.Label:
    return html.Label(
        [f"{label} ", dcc.Input(id=input_id, type="number", value=value, className="model-custom",
                                style={"minWidth": "5rem", "width": "6rem"}, **props)],
        className="field-label",
    )  # fmt: skip


def layout() -> html.Section:
    generation_controls = html.Div(
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
            _number("inv-gen-tokens", 20, f"new tokens (1-{MAX_NEW_TOKENS})", step=1),
            _number("inv-gen-temperature", 1.0, "temperature", step=0.05),
            _number("inv-gen-top-k", 0, "top-k (0 = off)", step=1),
            _number("inv-gen-top-p", 1.0, "top-p", step=0.01),
            _number("inv-gen-seed", 0, "seed", step=1),
            _number("inv-gen-beams", 3, f"beams (1-{MAX_BEAMS})", step=1),
            _button("Generate", "inv-gen-run", True),
        ],
        className="row",
    )
    return section(
        NUMBER,
        "Investigate: change the model and watch",
        EXPLAIN,
        dcc.Store(id="inv-heads", data=[]),
        dcc.Store(id="inv-results", data={}),
        dcc.Store(id="inv-grid-marks"),
        dcc.Download(id="inv-download"),
        html.Div(id="inv-message", role="alert"),
        html.Div(
            [
                html.Label("Target token", htmlFor="inv-target", className="field-label"),
                dcc.Input(
                    id="inv-target",
                    type="text",
                    placeholder="top prediction",
                    className="model-custom",
                ),
                html.Span("e.g. ␣Paris (␣ is a space) or 6342", className="hint"),
                html.Span(className="spacer"),
                _button("Download results (JSON)", "inv-download-json"),
            ],
            className="row",
        ),
        html.H3("Ablation: remove heads"),
        html.P(EXPLAIN_ABLATION, className="explain"),
        html.Div(
            [
                html.Span("Heads:", className="field-label"),
                html.Span(id="inv-chips", className="row"),
                dcc.Input(
                    id="inv-heads-text",
                    type="text",
                    placeholder="type LAYER.HEAD, e.g. 0.1,3.5",
                    className="model-custom",
                ),
                _button("Add", "inv-heads-add"),
                _button("Clear", "inv-heads-clear"),
            ],
            className="row",
        ),
        html.P(
            "Pick heads by typing them, by clicking cells of the attention grid (Stage 3) with "
            '"adds it to the ablation set" chosen, or by clicking the scan below.',
            className="hint",
        ),
        html.Div(
            [
                dcc.RadioItems(
                    id="inv-mode",
                    options=[{"label": f"{m} ablation", "value": m} for m in MODES],
                    value="zero",
                    inline=True,
                ),
                _button("Run ablation", "inv-ablate", True),
                _button("Scan every head", "inv-scan-run"),
            ],
            className="row actions",
        ),
        html.Div(id="inv-ablation-body"),
        graph("inv-ablation", "lmscope-ablation"),
        html.H3("Which heads matter here? The ablation scan"),
        html.P(EXPLAIN_SCAN, className="explain"),
        html.Div(id="inv-scan-body"),
        graph("inv-scan", "lmscope-ablation-scan"),
        html.H3("Direct logit attribution"),
        html.P([EXPLAIN_DLA, " ", DLA_METHOD], className="explain"),
        _button("Attribute the logit", "inv-dla-run", True),
        html.Div(id="inv-dla-body"),
        html.Div(
            [graph("inv-dla-heads", "lmscope-dla-heads"), graph("inv-dla-mlp", "lmscope-dla-mlp")],
            className="two-col",
        ),
        html.H3("Token attribution"),
        html.P(EXPLAIN_TOKENS, className="explain"),
        _button("Attribute the tokens", "inv-attr-run", True),
        html.Div(id="inv-attr-body"),
        html.H3("Generation"),
        html.P(EXPLAIN_GENERATION, className="explain"),
        generation_controls,
        html.Div(id="inv-gen-body"),
        html.H3("Compare with another model"),
        html.P(EXPLAIN_COMPARE, className="explain"),
        html.Div(
            [
                dcc.Dropdown(
                    id="inv-compare-model",
                    clearable=True,
                    searchable=False,
                    placeholder="second model",
                    className="model-picker",
                ),
                dcc.Input(
                    id="inv-compare-custom",
                    type="text",
                    placeholder="or any Hugging Face id",
                    className="model-custom",
                ),
                _button("Compare", "inv-compare-run", True),
            ],
            className="row",
        ),
        html.Div(id="inv-compare-body"),
        graph("inv-compare", "lmscope-compare"),
        badge="Investigate",
    )


def _head_chips(heads: list[list[int]]) -> list:
    """The ablation set as chips (`L4-H11`)."""
    if not heads:
        return [html.Span("none yet", className="hint")]
    return [html.Span(head_name(*h), className="chip-inline", **{"data-head": head_name(*h)})
            for h in heads]  # fmt: skip


def _predictions(rows: list[dict]) -> html.Table:
    """A model's top predictions (`Prediction.to_dict()` rows) as a small table."""
    return html.Table(
        [
            html.Thead(html.Tr([html.Th("#"), html.Th("token"), html.Th("probability")])),
            html.Tbody(
                [
                    html.Tr([html.Td(i), html.Td(p["display"], className="mono"),
                             html.Td(figures.percent(p["probability"]))])
                    for i, p in enumerate(rows, 1)
                ]
            ),
        ],
        className="table",
    )  # fmt: skip


def _tint(value: float, limit: float) -> str:
    """A chip background for an attribution: blue toward the target, red away, by strength."""
    alpha = min(1.0, abs(value) / limit) * 0.75 if limit else 0.0
    rgb = "47,111,173" if value >= 0 else "225,87,89"
    return f"background: rgba({rgb},{alpha:.3f})"


def _generation_view(result: Generation) -> list:
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


def register(app: Dash, service: Service) -> None:
    def model_and_prompt(data: dict | None) -> tuple[LoadedModel, str]:
        """The analyzed prompt's model and text (a `RequestError` before the first Analyze)."""
        if not data or not data.get("prompt"):
            raise RequestError(NO_ANALYSIS)
        return service.model(data["model"]), data["prompt"]

    shown: dict[str, str] = {}  # per tab (client id): the analysis the panel now belongs to

    def current_only(run: Callable[..., tuple]) -> Callable[..., tuple]:
        """Drop a result computed for an analysis the tab has since replaced (Analyze pressed
        again while it ran). The callback's last two arguments are the analysis and the client."""

        @functools.wraps(run)
        def checked(*args):
            *args, client = args
            result = run(*args)
            data = args[-1] or {}
            if shown.get(client, data.get("id")) != data.get("id"):
                return (no_update,) * len(result)
            return result

        return checked

    def keep(name: str, result: dict) -> Patch:
        patch = Patch()
        patch[name] = result
        return patch

    @app.callback(
        Output("inv-heads", "data"),
        Output("inv-message", "children", allow_duplicate=True),
        Input({"kind": "head", "layer": ALL, "head": ALL}, "n_clicks"),
        Input({"kind": "figure", "name": "inv-scan"}, "clickData"),
        Input("inv-heads-add", "n_clicks"),
        Input("inv-heads-text", "n_submit"),
        Input("inv-heads-clear", "n_clicks"),
        State("grid-mode", "value"),
        State("inv-heads", "data"),
        State("inv-heads-text", "value"),
        State("analysis", "data"),
        prevent_initial_call=True,
    )
    def select(_cells, scan_click, _add, _submit, _clear, mode, heads, text, data):
        """Grid clicks (in select mode) toggle a head; scan clicks and the text field add heads."""
        trigger, heads = ctx.triggered_id, [list(h) for h in heads or []]
        if not ctx.triggered or not ctx.triggered[0]["value"]:
            return no_update, no_update
        if trigger == "inv-heads-clear":
            return [], ""
        if isinstance(trigger, dict) and trigger.get("kind") == "head":
            if mode != "select":
                return no_update, no_update
            head = [trigger["layer"], trigger["head"]]
            return ([h for h in heads if h != head] if head in heads else [*heads, head]), ""
        if isinstance(trigger, dict):  # a scan cell
            point = scan_click["points"][0]
            new = [(int(point["y"]), int(point["x"]))]
        else:
            try:
                lm, _ = model_and_prompt(data)
                new = check_heads(lm, parse_heads(text or ""))
            except LmscopeError as error:
                return no_update, _message(str(error))
        return heads + [list(h) for h in new if list(h) not in heads], ""

    @app.callback(Output("inv-chips", "children"), Input("inv-heads", "data"))
    def show_heads(heads):
        return _head_chips(heads or [])

    app.clientside_callback(
        """function (heads, _grid) {
            const chosen = new Set((heads || []).map(h => `L${h[0]}-H${h[1]}`));
            document.querySelectorAll(".head-cell").forEach(cell => {
                cell.classList.toggle("selected", chosen.has(cell.dataset.head));
            });
            return chosen.size;
        }""",
        Output("inv-grid-marks", "data"),
        Input("inv-heads", "data"),
        Input("head-grid-body", "children"),
    )

    @app.callback(
        Output("inv-ablation-body", "children"),
        Output({"kind": "figure", "name": "inv-ablation"}, "figure"),
        Output({"kind": "figure", "name": "inv-ablation"}, "style"),
        Output("inv-message", "children", allow_duplicate=True),
        Output("inv-results", "data", allow_duplicate=True),
        Input("inv-ablate", "n_clicks"),
        State("inv-heads", "data"),
        State("inv-mode", "value"),
        State("inv-target", "value"),
        State("analysis", "data"),
        State("client", "data"),
        running=[(Output("inv-ablate", "disabled"), True, False)],
        prevent_initial_call=True,
    )
    @current_only
    def run_ablation(_clicks, heads, mode, target, data):
        try:
            lm, prompt = model_and_prompt(data)
            if not heads:
                raise RequestError("Pick at least one head to ablate.")
            result = ablate(lm, prompt, heads, mode, target=_target(target),
                            new_tokens=ABLATION_TOKENS)  # fmt: skip
        except LmscopeError as error:
            return no_update, no_update, no_update, _message(str(error)), no_update
        p_before, p_after = result.target_probability
        before, after = result.before.softmax(-1), result.after.softmax(-1)
        top_before, top_after = result.top("before"), result.top("after")
        ids = [p.id for p in top_before] + [
            p.id for p in top_after if p.id not in {q.id for q in top_before}
        ]
        rows = [(i, display(lm.token_text(i)), float(before[i]), float(after[i])) for i in ids]
        names = ", ".join(head_name(*h) for h in result.heads)
        change = p_after - p_before
        sign = "+" if change >= 0 else "-"
        logratio = (
            f", log-probability {math.log(p_after) - math.log(p_before):+.3f}"
            if p_before > 0 and p_after > 0
            else ""
        )
        body = [
            html.P(
                [
                    f"{result.mode.capitalize()} ablation of {names}. Top token before: ",
                    html.Strong(top_before[0].to_dict()["display"], className="mono",
                                id="inv-top-before"),
                    f" {figures.percent(top_before[0].probability)}; after: ",
                    html.Strong(top_after[0].to_dict()["display"], className="mono",
                                id="inv-top-after"),
                    f" {figures.percent(top_after[0].probability)}.",
                ],
                className="prediction",
            ),
            html.P(
                [
                    "Target ",
                    html.Strong(display(result.target_text), className="mono"),
                    f" (id {result.target}): {figures.percent(p_before)} → "
                    f"{figures.percent(p_after)} (change {sign}{figures.percent(abs(change))}"
                    f"{logratio}). KL divergence (before ‖ after): ",
                    html.Strong(f"{result.kl:.4f}", id="inv-kl"),
                    " nats.",
                ],
                id="inv-target-change",
            ),
            html.P([html.Span("Greedy continuation before: ", className="field-label"),
                    html.Span(result.generation_before.text, className="continuation",
                              id="inv-continuation-before")]),
            html.P([html.Span("after: ", className="field-label"),
                    html.Span(result.generation_after.text, className="continuation",
                              id="inv-continuation-after")]),
        ]  # fmt: skip
        title = "Next-token probabilities before and after the ablation (top 10 of each)"
        return (
            body,
            figures.before_after(rows, title),
            SHOWN,
            "",
            keep("ablation", result.to_dict()),
        )

    @app.callback(
        Output("inv-scan-body", "children"),
        Output({"kind": "figure", "name": "inv-scan"}, "figure"),
        Output({"kind": "figure", "name": "inv-scan"}, "style"),
        Output("inv-message", "children", allow_duplicate=True),
        Output("inv-results", "data", allow_duplicate=True),
        Input("inv-scan-run", "n_clicks"),
        State("inv-mode", "value"),
        State("inv-target", "value"),
        State("analysis", "data"),
        State("client", "data"),
        running=[(Output("inv-scan-run", "disabled"), True, False)],
        prevent_initial_call=True,
    )
    @current_only
    def run_scan(_clicks, mode, target, data):
        try:
            lm, prompt = model_and_prompt(data)
            scan = ablation_scan(lm, prompt, mode, target=_target(target))
        except LmscopeError as error:
            return no_update, no_update, no_update, _message(str(error)), no_update
        shown = display(scan.target_text)
        effect = scan.effect
        worst = divmod(int(effect.argmin()), effect.shape[1])
        body = html.P(
            [
                f"{scan.mode.capitalize()} ablation of each head alone; target ",
                html.Strong(shown, className="mono"),
                f" (clean log-probability {scan.clean_logprob:.3f}). Removing ",
                html.Strong(head_name(*worst)),
                f" hurts it most ({float(effect.min()):+.3f}).",
            ]
        )
        fig = figures.head_map(
            effect,
            f"Change in log p({shown}) when one head is removed",
            "Δ log p",
            "change in log-probability",
        )
        return body, fig, SHOWN, "", keep("ablation_scan", scan.to_dict())

    @app.callback(
        Output("inv-dla-body", "children"),
        Output({"kind": "figure", "name": "inv-dla-heads"}, "figure"),
        Output({"kind": "figure", "name": "inv-dla-heads"}, "style"),
        Output({"kind": "figure", "name": "inv-dla-mlp"}, "figure"),
        Output({"kind": "figure", "name": "inv-dla-mlp"}, "style"),
        Output("inv-message", "children", allow_duplicate=True),
        Output("inv-results", "data", allow_duplicate=True),
        Input("inv-dla-run", "n_clicks"),
        State("inv-target", "value"),
        State("analysis", "data"),
        State("client", "data"),
        running=[(Output("inv-dla-run", "disabled"), True, False)],
        prevent_initial_call=True,
    )
    @current_only
    def run_dla(_clicks, target, data):
        failed = (no_update,) * 5
        analysis = stored(service, data)
        if analysis is None:
            return *failed, _message(NO_ANALYSIS), no_update
        try:
            dla = direct_logit_attribution(analysis, _target(target))
        except LmscopeError as error:
            return *failed, _message(str(error)), no_update
        shown = display(dla.target_text)
        body = html.P(
            [
                "Target ",
                html.Strong(shown, className="mono"),
                f": logit {dla.logit:.3f} = heads {float(dla.heads.sum()):+.3f} + MLPs "
                f"{float(dla.mlps.sum()):+.3f} + embeddings {dla.embeddings:+.3f} + biases "
                f"{float(dla.attention_bias.sum()) + dla.constant:+.3f}.",
            ]
        )
        heads = figures.head_map(
            dla.heads, f"Each head's direct effect on the logit of {shown}", "logit", "logit"
        )
        mlps = figures.layer_bars(dla.mlps, f"Each MLP's direct effect on {shown}", "logit")
        return body, heads, SHOWN, mlps, SHOWN, "", keep("logit_attribution", dla.to_dict())

    @app.callback(
        Output("inv-attr-body", "children"),
        Output("inv-message", "children", allow_duplicate=True),
        Output("inv-results", "data", allow_duplicate=True),
        Input("inv-attr-run", "n_clicks"),
        State("inv-target", "value"),
        State("analysis", "data"),
        State("client", "data"),
        running=[(Output("inv-attr-run", "disabled"), True, False)],
        prevent_initial_call=True,
    )
    @current_only
    def run_attribution(_clicks, target, data):
        try:
            lm, prompt = model_and_prompt(data)
            result = token_attribution(lm, prompt, _target(target))
        except LmscopeError as error:
            return no_update, _message(str(error)), no_update
        rows = []
        for name, label, values in (
            ("ig", "Integrated gradients", result.integrated_gradients.tolist()),
            ("gxi", "Gradient x input", result.gradient_x_input.tolist()),
        ):
            limit = max((abs(v) for v in values), default=0.0)
            rows += [
                html.P(html.Strong(label)),
                chips(
                    result.tokens,
                    "chip-plain",
                    notes=[f"; {label.lower()} {v:+.4f}" for v in values],
                    styles=[_tint(v, limit) for v in values],
                    id=f"inv-attr-{name}",
                ),
            ]
        gap = result.f_input - result.f_baseline
        total = float(result.integrated_gradients.sum())
        rows.append(
            html.P(
                f"Completeness: the integrated gradients add up to {total:.4f}; "
                f"f(prompt) - f(baseline) = {result.f_input:.4f} - ({result.f_baseline:.4f}) = "
                f"{gap:.4f} (relative error {result.completeness_error:.2%}, {result.steps} steps). "
                f"f = log p({display(result.target_text)}).",
                id="inv-completeness",
                className="hint",
            )
        )
        return rows, "", keep("token_attribution", result.to_dict())

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
    @current_only
    def run_generation(_clicks, method, tokens, temperature, top_k, top_p, seed, beams, data):
        body = {"method": method, "max_new_tokens": tokens}
        if method == "sample":
            body |= {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
        elif method == "beam":
            body["beams"] = beams
        try:
            lm, prompt = model_and_prompt(data)
            result = generate(lm, prompt, GenerationSettings.from_request(body))
        except LmscopeError as error:
            return no_update, _message(str(error)), no_update
        return _generation_view(result), "", keep("generation", result.to_dict())

    @app.callback(Output("inv-compare-model", "options"), Input("model-picker", "options"))
    def compare_choices(options):
        return options

    @app.callback(
        Output("inv-compare-body", "children"),
        Output({"kind": "figure", "name": "inv-compare"}, "figure"),
        Output({"kind": "figure", "name": "inv-compare"}, "style"),
        Output("inv-message", "children", allow_duplicate=True),
        Output("inv-results", "data", allow_duplicate=True),
        Input("inv-compare-run", "n_clicks"),
        State("inv-compare-model", "value"),
        State("inv-compare-custom", "value"),
        State("analysis", "data"),
        State("client", "data"),
        running=[(Output("inv-compare-run", "disabled"), True, False)],
        prevent_initial_call=True,
    )
    @current_only
    def run_compare(_clicks, picked, custom, data):
        try:
            first, prompt = model_and_prompt(data)
            second_id = (custom or "").strip() or picked
            if not second_id:
                raise RequestError("Choose a second model to compare with.")
            result = compare(first, service.model(second_id), prompt).to_dict()
        except LmscopeError as error:
            return no_update, no_update, no_update, _message(str(error)), no_update
        sides = result["models"]
        same = "the same" if result["same_top_prediction"] else "different"
        body = [
            html.P(f"The two models make {same} top prediction."),
            html.Div(
                [
                    html.Div([html.Strong(s["model"]["name"]),
                              _predictions(s["predictions"][:COMPARE_TOP])])
                    for s in sides
                ],
                className="two-col",
                id="inv-compare-predictions",
            ),
        ]  # fmt: skip
        fig = figures.categories_by_depth(sides, LABELS)
        fig.update_layout(title="Head categories on this prompt by relative depth")
        return body, fig, SHOWN, "", keep("comparison", result)

    @app.callback(
        Output("inv-download", "data"),
        Input("inv-download-json", "n_clicks"),
        State("inv-results", "data"),
        State("analysis", "data"),
        prevent_initial_call=True,
    )
    def download(_clicks, results, data):
        if not results:
            return no_update
        name = (data or {}).get("model", "model").replace("/", "_")
        document = {"model": (data or {}).get("model"), "prompt": (data or {}).get("prompt")}
        return dcc.send_string(
            json.dumps(document | results, ensure_ascii=False), f"lmscope-{name}-investigate.json"
        )

    @app.callback(
        Output("inv-ablation-body", "children", allow_duplicate=True),
        Output("inv-scan-body", "children", allow_duplicate=True),
        Output("inv-dla-body", "children", allow_duplicate=True),
        Output("inv-attr-body", "children", allow_duplicate=True),
        Output("inv-gen-body", "children", allow_duplicate=True),
        Output("inv-compare-body", "children", allow_duplicate=True),
        Output({"kind": "figure", "name": "inv-ablation"}, "style", allow_duplicate=True),
        Output({"kind": "figure", "name": "inv-scan"}, "style", allow_duplicate=True),
        Output({"kind": "figure", "name": "inv-dla-heads"}, "style", allow_duplicate=True),
        Output({"kind": "figure", "name": "inv-dla-mlp"}, "style", allow_duplicate=True),
        Output({"kind": "figure", "name": "inv-compare"}, "style", allow_duplicate=True),
        Output("inv-results", "data", allow_duplicate=True),
        Output("inv-message", "children", allow_duplicate=True),
        Input("analysis", "data"),
        State("client", "data"),
        prevent_initial_call=True,
    )
    def reset(data, client):
        """A new analysis: results of the previous prompt are no longer shown or downloaded."""
        if len(shown) > TABS_KEPT:
            shown.clear()
        shown[client] = (data or {}).get("id")
        return ([],) * 6 + (HIDDEN,) * 5 + ({}, "")
